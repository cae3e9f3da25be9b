//! Pods (`pkg/registry/core/pod`): the spec defaults a kubelet relies on, status reset to
//! `Pending` with its QoS class on create, graceful deletion of bound, running Pods.

use std::collections::HashSet;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use svcnet_core::field::FieldError;
use svcnet_core::names;

use crate::error::Result;
use crate::printers;
use crate::resources::{Resource, Subresource};
use crate::strategy::{self, Admission, Decoded, Strategy};

pub static RESOURCE: Resource = Resource {
    kind: "Pod",
    plural: "pods",
    singular: "pod",
    short_names: &["po"],
    categories: &["all"],
    has_status: true,
    fields: &[
        "spec.nodeName",
        "status.phase",
        "status.podIP",
        "spec.hostname",
    ],
    ..Resource::BASE
};

/// `terminationGracePeriodSeconds` when the spec does not say.
pub const DEFAULT_GRACE_SECONDS: i64 = 30;

pub struct PodStrategy;

pub fn strategy(_: &crate::config::Config) -> std::result::Result<Box<dyn Strategy>, String> {
    Ok(Box::new(PodStrategy))
}

fn set_default(obj: &mut Value, field: &str, value: Value) {
    if let Some(m) = obj.as_object_mut() {
        let v = m.entry(field).or_insert(Value::Null);
        if v.is_null() {
            *v = value;
        }
    }
}

/// `SetDefaults_Container`: pull policy from the image tag, termination message settings and
/// port protocols.
fn default_container(c: &mut Value) {
    let image = c["image"].as_str().unwrap_or("");
    let tag = image
        .rsplit_once('/')
        .map_or(image, |(_, last)| last)
        .split_once(':')
        .map(|(_, t)| t);
    let digest = image.contains('@');
    let policy = if !digest && tag.is_none_or(|t| t == "latest") {
        "Always"
    } else {
        "IfNotPresent"
    };
    set_default(c, "imagePullPolicy", json!(policy));
    set_default(c, "terminationMessagePath", json!("/dev/termination-log"));
    set_default(c, "terminationMessagePolicy", json!("File"));
    for p in c["ports"].as_array_mut().into_iter().flatten() {
        set_default(p, "protocol", json!("TCP"));
    }
}

/// The QoS class kube-apiserver records in the status on create (`qos.GetPodQOS`, simplified
/// to cpu and memory).
fn qos_class(spec: &Value) -> &'static str {
    let containers: Vec<&Value> = ["containers", "initContainers"]
        .iter()
        .flat_map(|k| spec[*k].as_array().into_iter().flatten())
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let req = &c["resources"]["requests"];
        let lim = &c["resources"]["limits"];
        for r in ["cpu", "memory"] {
            let (q, l) = (req.get(r).or(lim.get(r)), lim.get(r));
            any |= q.is_some() || l.is_some();
            if l.is_none() || q != l {
                guaranteed = false;
            }
        }
    }
    match (any, guaranteed) {
        (false, _) => "BestEffort",
        (true, true) => "Guaranteed",
        (true, false) => "Burstable",
    }
}

/// `SetDefaults_PodSpec` and its containers'.
fn default_pod(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
        return;
    };
    set_default(spec, "restartPolicy", json!("Always"));
    set_default(spec, "dnsPolicy", json!("ClusterFirst"));
    set_default(
        spec,
        "terminationGracePeriodSeconds",
        json!(DEFAULT_GRACE_SECONDS),
    );
    set_default(spec, "schedulerName", json!("default-scheduler"));
    set_default(spec, "securityContext", json!({}));
    set_default(spec, "enableServiceLinks", json!(true));
    set_default(spec, "priority", json!(0));
    for k in ["containers", "initContainers"] {
        for c in spec[k].as_array_mut().into_iter().flatten() {
            default_container(c);
        }
    }
}

fn validate(obj: &Value) -> Result<svcnet_core::field::ErrorList> {
    let pod: Pod = strategy::typed(&RESOURCE, obj)?;
    let mut errs = strategy::validate_meta(&RESOURCE, obj, names::dns1123_subdomain)?;
    let spec = pod.spec.unwrap_or_default();
    if spec.containers.is_empty() {
        errs.push(FieldError::required("spec.containers", ""));
    }
    let mut seen = HashSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        for m in names::dns1123_label(&c.name) {
            errs.push(FieldError::invalid(
                format!("spec.containers[{i}].name"),
                &c.name,
                m,
            ));
        }
        if !seen.insert(c.name.clone()) {
            errs.push(FieldError::duplicate(
                format!("spec.containers[{i}].name"),
                &c.name,
            ));
        }
        for (j, p) in c.ports.iter().flatten().enumerate() {
            if !(1..=65535).contains(&p.container_port) {
                errs.push(FieldError::invalid(
                    format!("spec.containers[{i}].ports[{j}].containerPort"),
                    p.container_port,
                    "must be between 1 and 65535, inclusive",
                ));
            }
            if let Some(n) = p.name.as_deref() {
                for m in names::iana_svc_name(n) {
                    errs.push(FieldError::invalid(
                        format!("spec.containers[{i}].ports[{j}].name"),
                        n,
                        m,
                    ));
                }
            }
        }
    }
    if let Some(h) = spec.hostname.as_deref() {
        for m in names::dns1123_label(h) {
            errs.push(FieldError::invalid("spec.hostname", h, m));
        }
    }
    if let Some(s) = spec.subdomain.as_deref() {
        for m in names::dns1123_label(s) {
            errs.push(FieldError::invalid("spec.subdomain", s, m));
        }
    }
    Ok(errs)
}

impl Strategy for PodStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    fn decode(&self, obj: Value) -> Result<Decoded> {
        let mut d = strategy::decode_as::<Pod>(&RESOURCE, obj, |_| {})?;
        default_pod(&mut d.object);
        Ok(d)
    }

    fn admit_create(&self, obj: &mut Value) -> Result<Admission> {
        obj["status"] = json!({"phase": "Pending", "qosClass": qos_class(&obj["spec"])});
        let errs = validate(obj)?;
        strategy::check(&RESOURCE, obj, errs)?;
        Ok(Admission::none())
    }

    fn admit_update(&self, new: &mut Value, old: &Value, sub: Subresource) -> Result<Admission> {
        let mut errs = validate(new)?;
        errs.extend(svcnet_core::meta::validate_update_meta(
            &strategy::object_meta(new)?,
            &strategy::object_meta(old)?,
        ));
        match sub {
            Subresource::Status => {
                // pods/status may not touch owner references (old kubelets corrupted them).
                new["metadata"]["ownerReferences"] = old["metadata"]["ownerReferences"].clone();
                if new["metadata"]["ownerReferences"].is_null()
                    && let Some(m) = new["metadata"].as_object_mut()
                {
                    m.remove("ownerReferences");
                }
            }
            _ => {
                let old_node = old["spec"]["nodeName"].as_str().unwrap_or("");
                let new_node = new["spec"]["nodeName"].as_str().unwrap_or("");
                if !old_node.is_empty() && old_node != new_node {
                    errs.push(FieldError::invalid(
                        "spec.nodeName",
                        new_node,
                        "field is immutable",
                    ));
                }
            }
        }
        strategy::check(&RESOURCE, new, errs)?;
        Ok(Admission::none())
    }

    /// Unbound or finished Pods go at once; others get the requested grace period or their
    /// own `terminationGracePeriodSeconds`.
    fn grace_period(&self, old: &Value, requested: Option<i64>) -> Option<i64> {
        let mut period = requested
            .or_else(|| old["spec"]["terminationGracePeriodSeconds"].as_i64())
            .unwrap_or(0);
        let bound = old["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty());
        let finished = matches!(
            old["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        );
        if !bound || finished {
            period = 0;
        }
        Some(period)
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn reset_fields(&self, sub: Subresource) -> &'static [&'static str] {
        match sub {
            Subresource::Status => &[
                "spec",
                "metadata.deletionTimestamp",
                "metadata.ownerReferences",
            ],
            _ => &["status"],
        }
    }

    fn columns(&self) -> Vec<Value> {
        use strategy::column;
        vec![
            strategy::name_column(),
            column(
                "Ready",
                "string",
                0,
                "The aggregate readiness state of this pod for accepting traffic.",
            ),
            column(
                "Status",
                "string",
                0,
                "The aggregate status of the containers in this pod.",
            ),
            column(
                "Restarts",
                "string",
                0,
                "The number of times the containers in this pod have been restarted.",
            ),
            strategy::age_column(),
            column("IP", "string", 1, "IP address allocated to the pod."),
            column(
                "Node",
                "string",
                1,
                "Name of the Node this pod is assigned to.",
            ),
            column(
                "Nominated Node",
                "string",
                1,
                "Name of the node where this pod is nominated to run.",
            ),
            column("Readiness Gates", "string", 1, "Pod readiness gates."),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        let (spec, status) = (&obj["spec"], &obj["status"]);
        let statuses = status["containerStatuses"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let total = spec["containers"].as_array().map_or(0, Vec::len);
        let ready = statuses.iter().filter(|c| c["ready"] == true).count();
        let restarts: i64 = statuses
            .iter()
            .map(|c| c["restartCount"].as_i64().unwrap_or(0))
            .sum();
        let phase = if obj["metadata"].get("deletionTimestamp").is_some() {
            "Terminating"
        } else {
            status["phase"].as_str().unwrap_or("Pending")
        };
        vec![
            json!(printers::name(obj)),
            json!(format!("{ready}/{total}")),
            json!(phase),
            json!(restarts.to_string()),
            json!(printers::age(obj)),
            json!(status["podIP"].as_str().unwrap_or("<none>")),
            json!(spec["nodeName"].as_str().unwrap_or("<none>")),
            json!("<none>"),
            json!("<none>"),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_the_image_tag() {
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "image": "nginx"},
            {"name": "b", "image": "registry:5000/app:1.2", "ports": [{"containerPort": 80}]},
            {"name": "c", "image": "app@sha256:abc", "imagePullPolicy": "Never"},
        ]}});
        default_pod(&mut pod);
        let c = &pod["spec"]["containers"];
        assert_eq!(c[0]["imagePullPolicy"], "Always");
        assert_eq!(c[1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c[1]["ports"][0]["protocol"], "TCP");
        assert_eq!(c[2]["imagePullPolicy"], "Never");
        assert_eq!(pod["spec"]["terminationGracePeriodSeconds"], 30);
        assert_eq!(pod["spec"]["enableServiceLinks"], true);
    }

    #[test]
    fn qos_classes() {
        let best = json!({"containers": [{"name": "a"}]});
        assert_eq!(qos_class(&best), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }
}
