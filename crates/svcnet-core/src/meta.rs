//! `ObjectMeta` validation shared by every kind.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::field::{ErrorList, FieldError};
use crate::names;

/// Total size limit of all annotations, as kube-apiserver enforces it.
const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

/// `ValidateObjectMeta`: the name (checked by `name_check`, e.g. [`names::dns1035_label`] for
/// Services), namespace presence, labels and annotations.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_check: fn(&str) -> Vec<String>,
) -> ErrorList {
    let mut errs = ErrorList::default();
    match meta.name.as_deref() {
        None | Some("") => errs.push(FieldError::required(
            "metadata.name",
            "name or generateName is required",
        )),
        Some(name) => {
            for m in name_check(name) {
                errs.push(FieldError::invalid("metadata.name", name, m));
            }
        }
    }
    match (namespaced, meta.namespace.as_deref()) {
        (true, None | Some("")) => errs.push(FieldError::required("metadata.namespace", "")),
        (true, Some(ns)) => {
            for m in names::dns1123_label(ns) {
                errs.push(FieldError::invalid("metadata.namespace", ns, m));
            }
        }
        (false, Some(ns)) if !ns.is_empty() => {
            errs.push(FieldError::forbidden(
                "metadata.namespace",
                "not allowed on this type",
            ));
        }
        _ => {}
    }
    for (k, v) in meta.labels.iter().flatten() {
        for m in names::qualified_name(k) {
            errs.push(FieldError::invalid("metadata.labels", k, m));
        }
        for m in names::label_value(v) {
            errs.push(FieldError::invalid(format!("metadata.labels[{k}]"), v, m));
        }
    }
    let mut total = 0;
    for (k, v) in meta.annotations.iter().flatten() {
        for m in names::qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid("metadata.annotations", k, m));
        }
        total += k.len() + v.len();
    }
    if total > TOTAL_ANNOTATION_SIZE {
        errs.push(FieldError::too_long(
            "metadata.annotations",
            TOTAL_ANNOTATION_SIZE,
        ));
    }
    errs
}

/// `ValidateObjectMetaUpdate`: identity fields may not change.
pub fn validate_update_meta(new: &ObjectMeta, old: &ObjectMeta) -> ErrorList {
    let mut errs = ErrorList::default();
    if new.name != old.name {
        errs.push(FieldError::invalid(
            "metadata.name",
            new.name.clone().unwrap_or_default(),
            "field is immutable",
        ));
    }
    if new.namespace != old.namespace {
        errs.push(FieldError::invalid(
            "metadata.namespace",
            new.namespace.clone().unwrap_or_default(),
            "field is immutable",
        ));
    }
    if new.uid.is_some() && new.uid != old.uid {
        errs.push(FieldError::invalid(
            "metadata.uid",
            new.uid.clone().unwrap_or_default(),
            "field is immutable",
        ));
    }
    errs
}
