//! Kind-specific rules: decoding into the typed object (a type mismatch is a 400), defaulting,
//! validation (a 422 with field causes), Service IP/NodePort allocation, graceful deletion of
//! Pods and Namespaces, and the objects that exist from the start.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Event, Namespace, Node, Pod, Service,
    ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use svcnet_core::field::{ErrorList, FieldError};
use svcnet_core::service_alloc::{AllocateError, Allocation};
use svcnet_core::{meta, names, service};

use crate::error::{ApiError, Result};
use crate::registry::{DeleteOptions, ListOptions, Registry, meta_str, now_rfc3339};
use crate::resources::{self, Resource};

/// Side effects of admitting a write, settled once the store answers.
pub(crate) enum Admitted {
    None,
    Service {
        /// Newly allocated; released if the write fails.
        fresh: Allocation,
        /// Held by the old version only; released once the write succeeded.
        release_after: Allocation,
    },
}

fn typed<T: DeserializeOwned>(res: &Resource, obj: &Value) -> Result<T> {
    serde_json::from_value(obj.clone()).map_err(|e| {
        ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })
}

fn untyped<T: Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("k8s-openapi types serialize")
}

fn invalid(res: &Resource, obj: &Value, errors: ErrorList) -> ApiError {
    ApiError::Invalid {
        group: res.group.into(),
        kind: res.kind.into(),
        name: meta_str(obj, "name").unwrap_or_default().into(),
        errors,
    }
}

fn check(res: &Resource, obj: &Value, errors: ErrorList) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(res, obj, errors))
    }
}

fn alloc_error(res: &Resource, obj: &Value, e: AllocateError) -> ApiError {
    match e {
        AllocateError::Invalid(errs) => invalid(res, obj, errs),
        AllocateError::Exhausted(msg) => ApiError::Internal(msg),
    }
}

fn name_check(res: &Resource) -> fn(&str) -> Vec<String> {
    match res.plural {
        "services" => names::dns1035_label,
        "namespaces" => names::dns1123_label,
        _ => names::dns1123_subdomain,
    }
}

/// Validation of the kinds other than Service.
fn validate_other(res: &Resource, obj: &Value) -> Result<ErrorList> {
    let metadata: ObjectMeta = serde_json::from_value(obj["metadata"].clone())
        .map_err(|e| ApiError::BadRequest(format!("invalid metadata: {e}")))?;
    let mut errs = meta::validate_object_meta(&metadata, res.namespaced, name_check(res));
    match res.plural {
        "namespaces" => {
            typed::<Namespace>(res, obj)?;
        }
        "nodes" => {
            typed::<Node>(res, obj)?;
        }
        "events" => {
            typed::<Event>(res, obj)?;
        }
        "endpoints" => {
            let ep: Endpoints = typed(res, obj)?;
            for (i, subset) in ep.subsets.iter().flatten().enumerate() {
                for (j, a) in subset.addresses.iter().flatten().enumerate() {
                    if a.ip.parse::<std::net::IpAddr>().is_err() {
                        errs.push(FieldError::invalid(
                            format!("subsets[{i}].addresses[{j}].ip"),
                            &a.ip,
                            "must be a valid IP address",
                        ));
                    }
                }
            }
        }
        "pods" => {
            let pod: Pod = typed(res, obj)?;
            let spec = pod.spec.unwrap_or_default();
            if spec.containers.is_empty() {
                errs.push(FieldError::required("spec.containers", ""));
            }
            let mut seen = std::collections::HashSet::new();
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
        }
        "endpointslices" => {
            let slice: EndpointSlice = typed(res, obj)?;
            let at = slice.address_type.as_str();
            if at.is_empty() {
                errs.push(FieldError::required("addressType", ""));
            } else if !["IPv4", "IPv6", "FQDN"].contains(&at) {
                errs.push(FieldError::not_supported(
                    "addressType",
                    at,
                    &["FQDN", "IPv4", "IPv6"],
                ));
            }
            if slice.endpoints.len() > 1000 {
                errs.push(FieldError::new(
                    svcnet_core::field::ErrorType::TooMany,
                    "endpoints",
                    svcnet_core::field::BadValue::Int(slice.endpoints.len() as i64),
                    "must have at most 1000 items",
                ));
            }
            for (i, ep) in slice.endpoints.iter().enumerate() {
                if ep.addresses.is_empty() || ep.addresses.len() > 100 {
                    errs.push(FieldError::invalid(
                        format!("endpoints[{i}].addresses"),
                        svcnet_core::field::BadValue::list(&ep.addresses),
                        "must contain at least 1 and at most 100 addresses",
                    ));
                }
                for (j, a) in ep.addresses.iter().enumerate() {
                    let ok = match at {
                        "IPv4" => a.parse::<std::net::Ipv4Addr>().is_ok(),
                        "IPv6" => a.parse::<std::net::Ipv6Addr>().is_ok(),
                        _ => names::dns1123_subdomain(a).is_empty(),
                    };
                    if !ok {
                        errs.push(FieldError::invalid(
                            format!("endpoints[{i}].addresses[{j}]"),
                            a,
                            format!("must be a valid {at} address"),
                        ));
                    }
                }
            }
            for (i, p) in slice.ports.iter().flatten().enumerate() {
                if let Some(n) = p.name.as_deref().filter(|n| !n.is_empty()) {
                    for m in names::dns1123_label(n) {
                        errs.push(FieldError::invalid(format!("ports[{i}].name"), n, m));
                    }
                }
                if let Some(port) = p.port
                    && !(0..=65535).contains(&port)
                {
                    errs.push(FieldError::invalid(
                        format!("ports[{i}].port"),
                        port,
                        "must be between 0 and 65535, inclusive",
                    ));
                }
            }
        }
        _ => {}
    }
    Ok(errs)
}

pub(crate) fn admit_create(reg: &Registry, res: &Resource, obj: &mut Value) -> Result<Admitted> {
    if res.plural != "services" {
        match res.plural {
            "namespaces" => {
                obj["status"] = json!({"phase": "Active"});
                if obj.get("spec").is_none() {
                    obj["spec"] = json!({"finalizers": ["kubernetes"]});
                }
            }
            "pods" if obj["status"]["phase"].as_str().unwrap_or("").is_empty() => {
                obj["status"]["phase"] = json!("Pending");
            }
            _ => {}
        }
        let errs = validate_other(res, obj)?;
        check(res, obj, errs)?;
        return Ok(Admitted::None);
    }
    let mut svc: Service = typed(res, obj)?;
    let net = reg.allocators.lock().expect("allocator lock").network();
    let mut errs = service::prepare_for_create(&mut svc, net);
    errs.extend(service::validate_create(&svc));
    check(res, obj, errs)?;
    let mut spec = svc.spec.take().unwrap_or_default();
    let fresh = {
        let mut allocs = reg.allocators.lock().expect("allocator lock");
        let mut rng = reg.rng.lock().expect("rng lock");
        allocs
            .allocate(&mut spec, &Allocation::default(), &mut *rng)
            .map_err(|e| alloc_error(res, obj, e))?
    };
    svc.spec = Some(spec);
    *obj = untyped(&svc);
    Ok(Admitted::Service {
        fresh,
        release_after: Allocation::default(),
    })
}

pub(crate) fn admit_update(
    reg: &Registry,
    res: &Resource,
    old: &Value,
    new: &mut Value,
    status_only: bool,
) -> Result<Admitted> {
    if res.plural != "services" {
        let mut errs = validate_other(res, new)?;
        let (om, nm): (ObjectMeta, ObjectMeta) = (
            serde_json::from_value(old["metadata"].clone()).unwrap_or_default(),
            serde_json::from_value(new["metadata"].clone()).unwrap_or_default(),
        );
        errs.extend(meta::validate_update_meta(&nm, &om));
        if res.plural == "pods" && !status_only {
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
        check(res, new, errs)?;
        return Ok(Admitted::None);
    }
    let old_svc: Service = typed(res, old)?;
    let mut svc: Service = typed(res, new)?;
    if status_only {
        // Status writes cannot touch the spec, so allocations stay as they are.
        return Ok(Admitted::None);
    }
    let net = reg.allocators.lock().expect("allocator lock").network();
    let mut errs = service::prepare_for_update(&mut svc, &old_svc, net);
    errs.extend(service::validate_update(&svc, &old_svc));
    check(res, new, errs)?;
    let old_spec = old_svc.spec.clone().unwrap_or_default();
    let held = Allocation::held_by(&old_spec);
    let mut spec = svc.spec.take().unwrap_or_default();
    let fresh = {
        let mut allocs = reg.allocators.lock().expect("allocator lock");
        let mut rng = reg.rng.lock().expect("rng lock");
        allocs
            .allocate(&mut spec, &held, &mut *rng)
            .map_err(|e| alloc_error(res, new, e))?
    };
    let release_after = held.minus(&Allocation::held_by(&spec));
    svc.spec = Some(spec);
    *new = untyped(&svc);
    Ok(Admitted::Service {
        fresh,
        release_after,
    })
}

/// Called after an object left the store.
pub(crate) fn after_delete(reg: &Registry, res: &Resource, old: &Value) {
    if res.plural == "services"
        && let Ok(svc) = serde_json::from_value::<Service>(old.clone())
    {
        let held = Allocation::held_by(&svc.spec.unwrap_or_default());
        reg.allocators
            .lock()
            .expect("allocator lock")
            .release(&held);
    }
}

/// Objects that are marked for deletion instead of removed at once: bound Pods (their node
/// agent finishes them; the grace-period reaper otherwise), objects with finalizers, and
/// Namespaces (their content is removed first). Returns the marked object, or `None` when
/// `old` is to be removed now.
pub(crate) fn graceful_delete(res: &Resource, old: &Value, opts: &DeleteOptions) -> Option<Value> {
    let has_finalizers = old["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty());
    let mut obj = old.clone();
    let now = now_rfc3339();
    match res.plural {
        "namespaces" => {
            if obj["metadata"].get("deletionTimestamp").is_none() {
                obj["metadata"]["deletionTimestamp"] = json!(now);
            }
            obj["status"]["phase"] = json!("Terminating");
            Some(obj)
        }
        "pods" => {
            let grace = opts
                .grace_period_seconds
                .or_else(|| old["spec"]["terminationGracePeriodSeconds"].as_i64())
                .unwrap_or(30);
            let bound = old["spec"]["nodeName"]
                .as_str()
                .is_some_and(|n| !n.is_empty());
            let running = !matches!(
                old["status"]["phase"].as_str(),
                Some("Succeeded" | "Failed")
            );
            if grace <= 0 || !bound || !running {
                return (has_finalizers).then(|| {
                    obj["metadata"]["deletionTimestamp"] = json!(now);
                    obj
                });
            }
            if obj["metadata"].get("deletionTimestamp").is_none() {
                let at = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(grace);
                obj["metadata"]["deletionTimestamp"] =
                    json!(at.round(jiff::Unit::Second).unwrap_or(at).to_string());
                obj["metadata"]["deletionGracePeriodSeconds"] = json!(grace);
            }
            Some(obj)
        }
        _ if has_finalizers => {
            obj["metadata"]["deletionTimestamp"] = json!(now);
            Some(obj)
        }
        _ => None,
    }
}

/// The namespace controller's job: delete everything in a terminating namespace, then it.
pub(crate) fn spawn_namespace_cleanup(reg: &Registry, ns: &str) {
    let Some(reg) = reg.self_arc() else { return };
    let ns = ns.to_owned();
    tokio::spawn(async move {
        let opts = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        // The namespace goes only once nothing is left in it: objects held by finalizers (or a
        // failed delete) keep it Terminating and the sweep is retried.
        let mut pause = std::time::Duration::from_millis(100);
        loop {
            let mut left = 0;
            for res in resources::ALL.iter().filter(|r| r.namespaced) {
                if let Err(e) = reg
                    .delete_collection(res, Some(&ns), &ListOptions::default(), &opts)
                    .await
                {
                    tracing::warn!(namespace = %ns, resource = res.plural, error = %e, "namespace cleanup failed");
                }
                match reg.store.list(&res.prefix(Some(&ns)), None, Some(1)).await {
                    Ok(page) => left += page.items.len(),
                    Err(_) => left += 1,
                }
            }
            if left == 0 {
                break;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(std::time::Duration::from_secs(10));
        }
        match reg
            .store
            .delete(
                &resources::NAMESPACES.key(None, &ns),
                svcnet_store::Precondition::MustExist,
            )
            .await
        {
            Ok(_) | Err(svcnet_store::Error::NotFound) => {}
            Err(e) => tracing::warn!(namespace = %ns, error = %e, "namespace delete failed"),
        }
    });
}

/// Namespaces and the `kubernetes` Service every cluster starts with.
pub(crate) async fn bootstrap(reg: &Arc<Registry>) -> Result<()> {
    reg.set_self_arc();
    // Finish deleting namespaces a previous run left Terminating.
    let all = reg
        .store
        .list(&resources::NAMESPACES.prefix(None), None, None)
        .await?;
    for kv in &all.items {
        let obj = crate::registry::decode(kv)?;
        if obj["status"]["phase"] == "Terminating" {
            spawn_namespace_cleanup(reg, meta_str(&obj, "name").unwrap_or_default());
        }
    }
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        match reg.create(&resources::NAMESPACES, None, obj, false).await {
            Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    let first_ip = reg
        .allocators
        .lock()
        .expect("allocator lock")
        .first_ip()
        .to_string();
    let advertise = reg.config.advertise;
    let labels: BTreeMap<String, String> = [("component", "apiserver"), ("provider", "kubernetes")]
        .into_iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect();
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("kubernetes".into()),
            namespace: Some("default".into()),
            labels: Some(labels.clone()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some(first_ip),
            ports: Some(vec![ServicePort {
                name: Some("https".into()),
                port: 443,
                protocol: Some("TCP".into()),
                target_port: Some(IntOrString::Int(advertise.port().into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    };
    match reg
        .create(&resources::SERVICES, Some("default"), untyped(&svc), false)
        .await
    {
        Ok(_) | Err(ApiError::AlreadyExists { .. }) => {}
        Err(e) => tracing::warn!(error = %e, "could not create the kubernetes Service"),
    }
    // The API server publishes its own endpoints (the controller skips selector-less Services).
    let ep = Endpoints {
        metadata: ObjectMeta {
            name: Some("kubernetes".into()),
            namespace: Some("default".into()),
            labels: Some(labels),
            ..Default::default()
        },
        subsets: Some(vec![EndpointSubset {
            addresses: Some(vec![EndpointAddress {
                ip: advertise.ip().to_string(),
                ..Default::default()
            }]),
            ports: Some(vec![EndpointPort {
                name: Some("https".into()),
                port: advertise.port().into(),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }]),
    };
    let ep_value = untyped(&ep);
    match reg
        .get(&resources::ENDPOINTS, Some("default"), "kubernetes")
        .await
    {
        Ok(existing) if existing["subsets"] == ep_value["subsets"] => {}
        Ok(_) => {
            reg.update(
                &resources::ENDPOINTS,
                Some("default"),
                "kubernetes",
                ep_value,
                false,
                false,
            )
            .await?;
        }
        Err(_) => {
            reg.create(&resources::ENDPOINTS, Some("default"), ep_value, false)
                .await?;
        }
    }
    crate::controller::publish_kubernetes_slice(reg, advertise).await?;
    Ok(())
}

/// Fields of `obj` that the kind does not have (`fieldValidation`): paths such as
/// `spec.ports[0].nodeport`.
pub(crate) fn unknown_fields(res: &Resource, obj: &Value) -> Vec<String> {
    fn roundtrip<T: DeserializeOwned + Serialize>(obj: &Value) -> Option<Value> {
        serde_json::from_value::<T>(obj.clone())
            .ok()
            .map(|t| untyped(&t))
    }
    let typed = match res.plural {
        "services" => roundtrip::<Service>(obj),
        "pods" => roundtrip::<Pod>(obj),
        "nodes" => roundtrip::<Node>(obj),
        "namespaces" => roundtrip::<Namespace>(obj),
        "endpoints" => roundtrip::<Endpoints>(obj),
        "endpointslices" => roundtrip::<EndpointSlice>(obj),
        "events" => roundtrip::<Event>(obj),
        _ => None,
    };
    let mut out = Vec::new();
    if let Some(typed) = typed {
        collect_unknown(obj, &typed, "", &mut out);
    }
    out
}

fn collect_unknown(input: &Value, typed: &Value, path: &str, out: &mut Vec<String>) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match t.get(k) {
                    None => out.push(p),
                    Some(tv) => collect_unknown(v, tv, &p, out),
                }
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (a, b)) in i.iter().zip(t).enumerate() {
                collect_unknown(a, b, &format!("{path}[{n}]"), out);
            }
        }
        _ => {}
    }
}
