//! `ObjectMeta` validation shared by every kind (apimachinery `pkg/api/validation/objectmeta.go`).

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference, Time};

use crate::field::{BadValue, ErrorList, FieldError, go_quote};
use crate::names;

/// Total size limit of all annotations, as kube-apiserver enforces it.
pub(crate) const TOTAL_ANNOTATION_SIZE: usize = 256 * 1024;

const FINALIZER_ORPHAN: &str = "orphan";
const FINALIZER_FOREGROUND: &str = "foregroundDeletion";
const IMMUTABLE: &str = "field is immutable";

/// apimachinery's `maskTrailingDash`, applied to a `generateName` before the name check: it
/// replaces the last *two* characters by `a` when the prefix ends in `-`.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        let cut = name.len() - 2;
        match name.get(..cut) {
            Some(head) => format!("{head}a"),
            // A multi-byte character before the dash: Go would cut it in half, which fails
            // any name rule just as this does.
            None => name.to_owned(),
        }
    } else {
        name.to_owned()
    }
}

/// `ValidateObjectMeta`: generateName and name (checked by `name_check`, e.g.
/// [`names::dns1035_label`] for Services), namespace, generation, labels, annotations,
/// ownerReferences and finalizers.
pub fn validate_object_meta(
    meta: &ObjectMeta,
    namespaced: bool,
    name_check: fn(&str) -> Vec<String>,
) -> ErrorList {
    let mut errs = ErrorList::default();
    if let Some(prefix) = meta.generate_name.as_deref().filter(|p| !p.is_empty()) {
        for m in name_check(&mask_trailing_dash(prefix)) {
            errs.push(FieldError::invalid("metadata.generateName", prefix, m));
        }
    }
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
    if let Some(g) = meta.generation.filter(|g| *g < 0) {
        errs.push(FieldError::invalid(
            "metadata.generation",
            g,
            "must be greater than or equal to 0",
        ));
    }
    validate_labels_and_annotations(meta, &mut errs);
    validate_owner_references(meta.owner_references.as_deref().unwrap_or(&[]), &mut errs);
    validate_finalizers(meta.finalizers.as_deref(), &mut errs);
    errs
}

/// `ValidateLabels`: key and value errors both name the map (`metadata.labels`), not the key.
pub fn validate_labels(
    labels: Option<&std::collections::BTreeMap<String, String>>,
    path: &str,
    errs: &mut ErrorList,
) {
    for (k, v) in labels.into_iter().flatten() {
        for m in names::qualified_name(k) {
            errs.push(FieldError::invalid(path, k, m));
        }
        for m in names::label_value(v) {
            errs.push(FieldError::invalid(path, v, m));
        }
    }
}

fn validate_labels_and_annotations(meta: &ObjectMeta, errs: &mut ErrorList) {
    validate_labels(meta.labels.as_ref(), "metadata.labels", errs);
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
}

/// `%#v` of a `*bool`: Go prints the pointer's address, which no client can predict.
fn go_bool_ptr(b: Option<bool>) -> &'static str {
    match b {
        None => "(*bool)(nil)",
        Some(_) => "(*bool)(0xc000000000)",
    }
}

/// `%#v` of a `metav1.OwnerReference`.
fn go_owner_reference(r: &OwnerReference) -> String {
    format!(
        "v1.OwnerReference{{APIVersion:{}, Kind:{}, Name:{}, UID:{}, Controller:{}, BlockOwnerDeletion:{}}}",
        go_quote(&r.api_version),
        go_quote(&r.kind),
        go_quote(&r.name),
        go_quote(&r.uid),
        go_bool_ptr(r.controller),
        go_bool_ptr(r.block_owner_deletion),
    )
}

/// `ValidateOwnerReferences`.
fn validate_owner_references(refs: &[OwnerReference], errs: &mut ErrorList) {
    const PATH: &str = "metadata.ownerReferences";
    let mut first_controller: Option<String> = None;
    for r in refs {
        // schema.FromAPIVersionAndKind: an unparsable apiVersion gives an empty version.
        let (group, version) = match r.api_version.split('/').collect::<Vec<_>>().as_slice() {
            [v] => ("", *v),
            [g, v] => (*g, *v),
            _ => ("", ""),
        };
        if version.is_empty() {
            errs.push(FieldError::invalid(
                format!("{PATH}.apiVersion"),
                &r.api_version,
                "version must not be empty",
            ));
        }
        if r.kind.is_empty() {
            errs.push(FieldError::invalid(
                format!("{PATH}.kind"),
                &r.kind,
                "kind must not be empty",
            ));
        }
        if r.name.is_empty() {
            errs.push(FieldError::invalid(
                format!("{PATH}.name"),
                &r.name,
                "name must not be empty",
            ));
        }
        if r.uid.is_empty() {
            errs.push(FieldError::invalid(
                format!("{PATH}.uid"),
                &r.uid,
                "uid must not be empty",
            ));
        }
        if group.is_empty() && version == "v1" && r.kind == "Event" {
            errs.push(FieldError::invalid(
                PATH,
                BadValue::Raw(go_owner_reference(r)),
                "/v1, Kind=Event is disallowed from being an owner",
            ));
        }
        if r.controller == Some(true) {
            let this = format!("{}/{}", r.kind, r.name);
            match &first_controller {
                Some(first) => {
                    let all: Vec<String> = refs.iter().map(go_owner_reference).collect();
                    errs.push(FieldError::invalid(
                        PATH,
                        BadValue::Raw(format!("[]v1.OwnerReference{{{}}}", all.join(", "))),
                        format!(
                            "Only one reference can have Controller set to true. Found \"true\" in references for {first} and {this}"
                        ),
                    ));
                }
                None => first_controller = Some(this),
            }
        }
    }
}

/// `ValidateFinalizers`.
fn validate_finalizers(finalizers: Option<&[String]>, errs: &mut ErrorList) {
    let list = finalizers.unwrap_or(&[]);
    for f in list {
        for m in names::qualified_name(f) {
            errs.push(FieldError::invalid("metadata.finalizers", f, m));
        }
    }
    if list.iter().any(|f| f == FINALIZER_ORPHAN) && list.iter().any(|f| f == FINALIZER_FOREGROUND)
    {
        errs.push(FieldError::invalid(
            "metadata.finalizers",
            BadValue::slice("string", finalizers),
            format!("finalizer {FINALIZER_ORPHAN} and {FINALIZER_FOREGROUND} cannot be both set"),
        ));
    }
}

/// A `metav1.Time` as Go's `time.Time.String()` prints it (the API server's zone is UTC).
fn go_time(t: Option<&Time>) -> String {
    let Some(t) = t else {
        return "0001-01-01 00:00:00 +0000 UTC".to_owned();
    };
    let mut s =
        t.0.to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string();
    let nanos = t.0.subsec_nanosecond();
    if nanos != 0 {
        s.push('.');
        s.push_str(format!("{nanos:09}").trim_end_matches('0'));
    }
    s.push_str(" +0000 UTC");
    s
}

/// `ValidateObjectMetaUpdate`: no new finalizers while deleting, generation not decremented,
/// identity and timestamps immutable, then labels, annotations and ownerReferences of the new
/// version. (The resourceVersion rule is the store's: an update without one means "latest".)
pub fn validate_update_meta(new: &ObjectMeta, old: &ObjectMeta) -> ErrorList {
    let mut errs = ErrorList::default();
    if old.deletion_timestamp.is_some() {
        let old_f: BTreeSet<&String> = old.finalizers.iter().flatten().collect();
        let extra: BTreeSet<&String> = new
            .finalizers
            .iter()
            .flatten()
            .filter(|f| !old_f.contains(f))
            .collect();
        if !extra.is_empty() {
            let extra: Vec<&String> = extra.into_iter().collect();
            errs.push(FieldError::forbidden(
                "metadata.finalizers",
                format!(
                    "no new finalizers can be added if the object is being deleted, found new finalizers {}",
                    BadValue::list(&extra)
                ),
            ));
        }
    }
    let (new_gen, old_gen) = (new.generation.unwrap_or(0), old.generation.unwrap_or(0));
    if new_gen < old_gen {
        errs.push(FieldError::invalid(
            "metadata.generation",
            new_gen,
            "must not be decremented",
        ));
    }
    let s = |v: &Option<String>| v.clone().unwrap_or_default();
    if s(&new.name) != s(&old.name) {
        errs.push(FieldError::invalid(
            "metadata.name",
            s(&new.name),
            IMMUTABLE,
        ));
    }
    if s(&new.namespace) != s(&old.namespace) {
        errs.push(FieldError::invalid(
            "metadata.namespace",
            s(&new.namespace),
            IMMUTABLE,
        ));
    }
    // An update without a uid takes the stored one (kube's BeforeUpdate), so only a
    // different one is an error.
    if new.uid.is_some() && s(&new.uid) != s(&old.uid) {
        errs.push(FieldError::invalid("metadata.uid", s(&new.uid), IMMUTABLE));
    }
    if new.creation_timestamp != old.creation_timestamp {
        errs.push(FieldError::invalid(
            "metadata.creationTimestamp",
            BadValue::Raw(go_time(new.creation_timestamp.as_ref())),
            IMMUTABLE,
        ));
    }
    if new.deletion_timestamp != old.deletion_timestamp {
        let value = match &new.deletion_timestamp {
            None => BadValue::Null,
            Some(t) => BadValue::Raw(go_time(Some(t))),
        };
        errs.push(FieldError::invalid(
            "metadata.deletionTimestamp",
            value,
            IMMUTABLE,
        ));
    }
    if new.deletion_grace_period_seconds != old.deletion_grace_period_seconds {
        errs.push(FieldError::invalid(
            "metadata.deletionGracePeriodSeconds",
            new.deletion_grace_period_seconds,
            IMMUTABLE,
        ));
    }
    validate_labels_and_annotations(new, &mut errs);
    validate_owner_references(new.owner_references.as_deref().unwrap_or(&[]), &mut errs);
    errs
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn meta(name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        }
    }

    fn strings(errs: &ErrorList) -> Vec<String> {
        errs.0.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn label_errors_name_the_map() {
        let mut m = meta("x");
        m.labels = Some(BTreeMap::from([("k".to_owned(), "-x".to_owned())]));
        let errs = validate_object_meta(&m, true, names::dns1035_label);
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].field, "metadata.labels");
        assert!(
            errs.0[0]
                .to_string()
                .starts_with(r#"metadata.labels: Invalid value: "-x": "#)
        );
    }

    #[test]
    fn generate_name_is_checked_as_a_prefix() {
        let mut m = meta("web-abcde");
        m.generate_name = Some("web-".into());
        assert!(validate_object_meta(&m, true, names::dns1035_label).is_empty());
        m.generate_name = Some("Web-".into());
        let errs = validate_object_meta(&m, true, names::dns1035_label);
        assert_eq!(errs.0[0].field, "metadata.generateName");
        assert_eq!(mask_trailing_dash("ab-"), "aa");
        assert_eq!(mask_trailing_dash("-"), "-");
    }

    #[test]
    fn finalizers_and_owner_references() {
        let mut m = meta("x");
        m.finalizers = Some(vec![
            "orphan".into(),
            "foregroundDeletion".into(),
            "a/b/c".into(),
        ]);
        m.owner_references = Some(vec![OwnerReference {
            api_version: "v1".into(),
            kind: "Event".into(),
            ..Default::default()
        }]);
        let errs = strings(&validate_object_meta(&m, true, names::dns1035_label));
        assert!(errs[0].starts_with(
            "metadata.ownerReferences.name: Invalid value: \"\": name must not be empty"
        ));
        assert_eq!(
            errs[1],
            "metadata.ownerReferences.uid: Invalid value: \"\": uid must not be empty"
        );
        assert!(errs[2].starts_with(
            r#"metadata.ownerReferences: Invalid value: v1.OwnerReference{APIVersion:"v1", Kind:"Event", Name:"", UID:"", Controller:(*bool)(nil), BlockOwnerDeletion:(*bool)(nil)}: /v1, Kind=Event is disallowed"#
        ));
        assert!(
            errs[3].starts_with(r#"metadata.finalizers: Invalid value: "a/b/c": a qualified name"#)
        );
        assert_eq!(
            errs[4],
            r#"metadata.finalizers: Invalid value: []string{"orphan", "foregroundDeletion", "a/b/c"}: finalizer orphan and foregroundDeletion cannot be both set"#
        );
        let two = |n: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "ReplicaSet".into(),
            name: n.into(),
            uid: "u".into(),
            controller: Some(true),
            ..Default::default()
        };
        let mut m = meta("x");
        m.owner_references = Some(vec![two("a"), two("b")]);
        let errs = strings(&validate_object_meta(&m, true, names::dns1035_label));
        assert_eq!(errs.len(), 1);
        assert!(errs[0].ends_with(
            r#"Only one reference can have Controller set to true. Found "true" in references for ReplicaSet/a and ReplicaSet/b"#
        ));
    }

    #[test]
    fn update_rules() {
        let mut old = meta("x");
        old.uid = Some("u1".into());
        old.creation_timestamp = Some(Time("2024-01-01T00:00:00Z".parse().unwrap()));
        old.finalizers = Some(vec!["a".into()]);
        let mut new = old.clone();
        assert!(validate_update_meta(&new, &old).is_empty());

        new.creation_timestamp = Some(Time("2024-01-02T03:04:05Z".parse().unwrap()));
        new.deletion_grace_period_seconds = Some(30);
        let errs = strings(&validate_update_meta(&new, &old));
        assert_eq!(
            errs,
            vec![
                "metadata.creationTimestamp: Invalid value: 2024-01-02 03:04:05 +0000 UTC: field is immutable",
                "metadata.deletionGracePeriodSeconds: Invalid value: 30: field is immutable",
            ]
        );

        // Finalizers cannot be added while the object is being deleted.
        old.deletion_timestamp = Some(Time("2024-01-03T00:00:00Z".parse().unwrap()));
        let mut new = old.clone();
        new.finalizers = Some(vec!["a".into(), "z".into(), "b".into()]);
        let errs = strings(&validate_update_meta(&new, &old));
        assert_eq!(
            errs,
            vec![
                r#"metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{"b", "z"}"#
            ]
        );
        new.finalizers = None;
        assert!(validate_update_meta(&new, &old).is_empty());
        new.deletion_timestamp = None;
        assert_eq!(
            strings(&validate_update_meta(&new, &old)),
            vec![r#"metadata.deletionTimestamp: Invalid value: "null": field is immutable"#]
        );
        let mut relabel = old.clone();
        relabel.labels = Some(BTreeMap::from([("k".to_owned(), "-".to_owned())]));
        assert_eq!(
            validate_update_meta(&relabel, &old).0[0].field,
            "metadata.labels"
        );
    }
}
