//! Namespaces (`pkg/registry/core/namespace`): created Active with the `kubernetes`
//! finalizer and the `kubernetes.io/metadata.name` label; a delete marks them Terminating and
//! the namespace controller empties them; the system namespaces cannot be deleted.

use k8s_openapi::api::core::v1::Namespace;
use serde_json::{Value, json};
use svcnet_core::field::{ErrorList, FieldError};
use svcnet_core::names;

use crate::error::{ApiError, Result};
use crate::printers;
use crate::resources::{Resource, Subresource};
use crate::strategy::{self, Admission, Decoded, DeletePlan, Strategy};

pub static RESOURCE: Resource = Resource {
    kind: "Namespace",
    plural: "namespaces",
    singular: "namespace",
    namespaced: false,
    short_names: &["ns"],
    has_status: true,
    has_finalize: true,
    fields: &["status.phase"],
    ..Resource::BASE
};

/// The finalizer the namespace controller removes once the namespace is empty.
pub const FINALIZER: &str = "kubernetes";
const NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Namespaces every cluster has and keeps (the NamespaceLifecycle admission plugin's
/// immortal namespaces, plus the node-lease namespace).
pub const SYSTEM: &[&str] = &["default", "kube-system", "kube-public", "kube-node-lease"];

pub struct NamespaceStrategy;

pub fn strategy(_: &crate::config::Config) -> std::result::Result<Box<dyn Strategy>, String> {
    Ok(Box::new(NamespaceStrategy))
}

fn label_name(ns: &mut Namespace) {
    if let Some(name) = ns.metadata.name.clone().filter(|n| !n.is_empty()) {
        ns.metadata
            .labels
            .get_or_insert_with(Default::default)
            .insert(NAME_LABEL.into(), name);
    }
}

fn set_name_label(obj: &mut Value) {
    if let Some(name) = obj["metadata"]["name"].as_str().filter(|n| !n.is_empty()) {
        let name = name.to_owned();
        obj["metadata"]["labels"][NAME_LABEL] = json!(name);
    }
}

fn spec_finalizers(obj: &Value) -> &[Value] {
    obj["spec"]["finalizers"]
        .as_array()
        .map_or(&[], Vec::as_slice)
}

fn validate_finalizers(obj: &Value, errs: &mut ErrorList) {
    for (i, f) in spec_finalizers(obj).iter().enumerate() {
        let f = f.as_str().unwrap_or_default();
        // ValidateFinalizerName: a qualified name; unprefixed names must be standard ones.
        for m in names::qualified_name(f) {
            errs.push(FieldError::invalid(format!("spec.finalizers[{i}]"), f, m));
        }
        if !f.contains('/') && ![FINALIZER, "orphan", "foregroundDeletion"].contains(&f) {
            errs.push(FieldError::invalid(
                format!("spec.finalizers[{i}]"),
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

impl Strategy for NamespaceStrategy {
    fn resource(&self) -> &'static Resource {
        &RESOURCE
    }

    /// `SetDefaults_Namespace`: the name label.
    fn decode(&self, obj: Value) -> Result<Decoded> {
        strategy::decode_as::<Namespace>(&RESOURCE, obj, label_name)
    }

    fn admit_create(&self, obj: &mut Value) -> Result<Admission> {
        obj["status"] = json!({"phase": "Active"});
        let has = spec_finalizers(obj)
            .iter()
            .any(|f| f.as_str() == Some(FINALIZER));
        if !has {
            match obj["spec"]["finalizers"].as_array_mut() {
                Some(list) => list.push(json!(FINALIZER)),
                None => obj["spec"]["finalizers"] = json!([FINALIZER]),
            }
        }
        let mut errs = strategy::validate_meta(&RESOURCE, obj, names::dns1123_label)?;
        validate_finalizers(obj, &mut errs);
        strategy::check(&RESOURCE, obj, errs)?;
        // Canonicalize: a generated name gets its label too.
        set_name_label(obj);
        Ok(Admission::none())
    }

    fn admit_update(&self, new: &mut Value, old: &Value, sub: Subresource) -> Result<Admission> {
        match sub {
            Subresource::Main => match old["spec"].get("finalizers") {
                Some(f) => new["spec"]["finalizers"] = f.clone(),
                None => {
                    if let Some(spec) = new["spec"].as_object_mut() {
                        spec.remove("finalizers");
                    }
                }
            },
            Subresource::Status => {}
            Subresource::Finalize => new["status"] = old["status"].clone(),
        }
        let mut errs = strategy::validate_meta_update(&RESOURCE, new, old, names::dns1123_label)?;
        match sub {
            Subresource::Status => {
                let phase = new["status"]["phase"].as_str().unwrap_or("");
                let deleting = new["metadata"].get("deletionTimestamp").is_some();
                if !deleting && phase != "Active" {
                    errs.push(FieldError::invalid(
                        "status.Phase",
                        phase,
                        "may only be 'Active' if `deletionTimestamp` is empty",
                    ));
                } else if deleting && phase != "Terminating" {
                    errs.push(FieldError::invalid(
                        "status.Phase",
                        phase,
                        "may only be 'Terminating' if `deletionTimestamp` is not empty",
                    ));
                }
            }
            _ => validate_finalizers(new, &mut errs),
        }
        strategy::check(&RESOURCE, new, errs)?;
        set_name_label(new);
        Ok(Admission::none())
    }

    fn check_delete(&self, obj: &Value) -> Result<()> {
        let name = obj["metadata"]["name"].as_str().unwrap_or_default();
        if SYSTEM.contains(&name) {
            return Err(ApiError::Denied {
                message: format!(
                    "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
                ),
                details: json!({"name": name, "kind": "namespaces"}),
            });
        }
        Ok(())
    }

    /// The first delete marks the namespace Terminating; it goes once the namespace controller
    /// has emptied it and removed its finalizers.
    fn plan_delete(&self, old: &Value, _grace: Option<i64>, now: jiff::Timestamp) -> DeletePlan {
        if old["metadata"].get("deletionTimestamp").is_none() {
            let mut obj = old.clone();
            obj["metadata"]["deletionTimestamp"] = json!(strategy::timestamp(now));
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
            obj["status"]["phase"] = json!("Terminating");
            return DeletePlan::Mark(obj);
        }
        if spec_finalizers(old).is_empty() && !strategy::has_finalizers(old) {
            DeletePlan::Now
        } else {
            DeletePlan::Pending
        }
    }

    fn should_delete_during_update(&self, new: &Value, old: &Value) -> bool {
        strategy::default_should_delete_during_update(new, old) && spec_finalizers(new).is_empty()
    }

    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn columns(&self) -> Vec<Value> {
        vec![
            strategy::name_column(),
            strategy::column("Status", "string", 0, "The status of the namespace"),
            strategy::age_column(),
        ]
    }

    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![
            json!(printers::name(obj)),
            json!(obj["status"]["phase"].as_str().unwrap_or("Active")),
            json!(printers::age(obj)),
        ]
    }
}
