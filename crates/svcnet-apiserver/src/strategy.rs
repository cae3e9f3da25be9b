//! The contract between the generic [`crate::registry::Registry`] and one kind, as
//! kube-apiserver's `RESTCreateStrategy`/`RESTUpdateStrategy`/`RESTDeleteStrategy` are: the
//! registry owns keys, revisions, metadata, dry run, field managers and retries; a
//! [`Strategy`] owns what differs per kind (defaults, preparation, validation, reservations
//! such as Service IPs, graceful deletion, table columns). The registry never asks which kind
//! it holds.
//!
//! Kinds live in [`crate::kinds`], one module each; this module also holds the small helpers
//! they share (typed decoding, the 422 error, metadata checks).

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use svcnet_core::field::ErrorList;
use svcnet_core::meta;

use crate::error::{ApiError, Result};
use crate::printers;
use crate::resources::Resource;
pub use crate::resources::Subresource;

/// What admitting a write produced: side effects (allocated addresses and ports), settled
/// once the store has answered (kept when the write lands, undone when it fails or is a dry
/// run), and warnings for the client.
#[must_use = "an admission must be committed or rolled back"]
pub struct Admission {
    held: Option<Box<dyn Reserved>>,
    warnings: Vec<String>,
}

/// One kind's pending side effects.
pub trait Reserved: Send {
    /// The write was stored.
    fn commit(self: Box<Self>);
    /// The write failed or was a dry run.
    fn rollback(self: Box<Self>);
}

impl Admission {
    pub fn none() -> Self {
        Self {
            held: None,
            warnings: Vec::new(),
        }
    }
    pub fn holding(r: impl Reserved + 'static) -> Self {
        Self {
            held: Some(Box::new(r)),
            warnings: Vec::new(),
        }
    }
    pub fn warn(mut self, warnings: Vec<String>) -> Self {
        self.warnings.extend(warnings);
        self
    }
    /// The write was stored; returns the warnings.
    pub fn commit(self) -> Vec<String> {
        if let Some(r) = self.held {
            r.commit();
        }
        self.warnings
    }
    /// The write failed or was a dry run; returns the warnings.
    pub fn rollback(self) -> Vec<String> {
        if let Some(r) = self.held {
            r.rollback();
        }
        self.warnings
    }
}

/// What a delete of a stored object does (`BeforeDelete`, `CheckGracefulDelete` and the
/// finalizer rules).
#[derive(Debug, PartialEq)]
pub enum DeletePlan {
    /// Remove it from the store now.
    Now,
    /// Store this marked version (deletion timestamp, grace period); something else finishes.
    Mark(Value),
    /// A deletion is already under way and this request changes nothing about it.
    Pending,
}

/// The per-kind rules. Every method has the object as JSON with its metadata filled in.
pub trait Strategy: Send + Sync + 'static {
    fn resource(&self) -> &'static Resource;

    /// Decodes a request body (create, update) or a patch result as kube-apiserver's decoder
    /// does: a value of the wrong type is a 400, fields the kind does not have are dropped and
    /// returned (as paths such as `spec.ports[0].nodeport`, for `fieldValidation`), and
    /// `SetDefaults_<Kind>` fills in the defaults, before field ownership is recorded.
    fn decode(&self, obj: Value) -> Result<Decoded>;

    /// `PrepareForCreate` and `Validate` (a 422 with field causes), then the reservations the
    /// object needs. May rewrite `obj` (allocated addresses, normalised fields).
    fn admit_create(&self, obj: &mut Value) -> Result<Admission>;

    /// `PrepareForUpdate` and `ValidateUpdate` of `new` over `old` for `sub`, then the
    /// reservations. The registry has already carried the server-owned metadata over and, for
    /// the status and finalize subresources, everything but the addressed part.
    fn admit_update(&self, new: &mut Value, old: &Value, sub: Subresource) -> Result<Admission>;

    /// A PUT of an object that does not exist creates it.
    fn allow_create_on_update(&self) -> bool {
        false
    }

    /// Refuses deleting objects that must stay (a 403).
    fn check_delete(&self, _obj: &Value) -> Result<()> {
        Ok(())
    }

    /// `CheckGracefulDelete`: the grace period a delete of `old` asking for `requested` gets,
    /// or `None` for kinds that are never deleted gracefully.
    fn grace_period(&self, _old: &Value, _requested: Option<i64>) -> Option<i64> {
        None
    }

    /// How deleting `old` proceeds; the generic rules by default.
    fn plan_delete(&self, old: &Value, requested: Option<i64>, now: jiff::Timestamp) -> DeletePlan {
        plan_delete(old, requested, self.grace_period(old, requested), now)
    }

    /// Whether an update that leaves `new` should remove the object (`ShouldDeleteDuringUpdate`):
    /// it was being deleted without a grace period and its last finalizer is gone.
    fn should_delete_during_update(&self, new: &Value, old: &Value) -> bool {
        default_should_delete_during_update(new, old)
    }

    /// Releases what the object held once it has left the store.
    fn after_delete(&self, _old: &Value) {}

    /// A DELETE answers with the deleted object (Pods, Namespaces) instead of a `Status`.
    fn returns_deleted_object(&self) -> bool {
        false
    }

    /// Rebuilds in-memory state (allocations) from the stored objects at start-up; `None`
    /// when the kind keeps none, so the registry need not read them.
    fn restore(&self) -> Option<&dyn Restore> {
        None
    }

    /// Paths the write of `sub` never changes and so never owns in `managedFields`
    /// (`GetResetFields`): the status for the object itself, everything else for status.
    fn reset_fields(&self, sub: Subresource) -> &'static [&'static str] {
        match sub {
            Subresource::Main if self.resource().has_status => &["status"],
            Subresource::Main => &[],
            Subresource::Status => &["spec"],
            Subresource::Finalize => &["status"],
        }
    }

    /// `kubectl get` columns (`as=Table`) and the cells of one object.
    fn columns(&self) -> Vec<Value> {
        vec![name_column(), age_column()]
    }
    fn cells(&self, obj: &Value) -> Vec<Value> {
        vec![json!(printers::name(obj)), json!(printers::age(obj))]
    }
}

/// A decoded object and the fields of the input the kind does not have.
pub struct Decoded {
    pub object: Value,
    pub unknown: Vec<String>,
}

/// Start-up repair from stored objects (kube-apiserver's allocation repair loops).
pub trait Restore {
    fn restore(&self, obj: &Value) -> Result<()>;
}

// === helpers for kinds ===

/// Decodes `obj` as the kind's typed object; a value of the wrong type is a 400, worded as
/// kube-apiserver's decoder words it.
pub fn typed<T: DeserializeOwned>(res: &Resource, obj: &Value) -> Result<T> {
    T::deserialize(obj).map_err(|e| {
        ApiError::BadRequest(format!(
            "{} in version \"{}\" cannot be handled as a {}: {e}",
            res.kind, res.version, res.kind
        ))
    })
}

pub fn untyped<T: Serialize>(obj: &T) -> Value {
    serde_json::to_value(obj).expect("k8s-openapi types serialize")
}

pub fn invalid(res: &Resource, obj: &Value, errors: ErrorList) -> ApiError {
    ApiError::Invalid {
        group: res.group.into(),
        kind: res.kind.into(),
        name: obj["metadata"]["name"].as_str().unwrap_or_default().into(),
        errors,
    }
}

/// `Ok` when there are no errors, else the 422.
pub fn check(res: &Resource, obj: &Value, errors: ErrorList) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid(res, obj, errors))
    }
}

pub fn object_meta(obj: &Value) -> Result<ObjectMeta> {
    ObjectMeta::deserialize(&obj["metadata"])
        .map_err(|e| ApiError::BadRequest(format!("invalid metadata: {e}")))
}

/// `ValidateObjectMeta` with the kind's name rule.
pub fn validate_meta(
    res: &Resource,
    obj: &Value,
    name_check: fn(&str) -> Vec<String>,
) -> Result<ErrorList> {
    Ok(meta::validate_object_meta(
        &object_meta(obj)?,
        res.namespaced,
        name_check,
    ))
}

/// `ValidateObjectMeta` plus `ValidateObjectMetaUpdate`.
pub fn validate_meta_update(
    res: &Resource,
    new: &Value,
    old: &Value,
    name_check: fn(&str) -> Vec<String>,
) -> Result<ErrorList> {
    let nm = object_meta(new)?;
    let mut errs = meta::validate_object_meta(&nm, res.namespaced, name_check);
    // Both check the labels and annotations; report each problem once.
    for e in meta::validate_update_meta(&nm, &object_meta(old)?).0 {
        if !errs.0.iter().any(|have| have.to_string() == e.to_string()) {
            errs.push(e);
        }
    }
    Ok(errs)
}

/// Decodes `obj` as `T` and back: the unknown fields are dropped (and returned); `defaults`
/// then fills in the kind's defaults on the typed object.
pub fn decode_as<T: DeserializeOwned + Serialize>(
    res: &Resource,
    obj: Value,
    defaults: impl FnOnce(&mut T),
) -> Result<Decoded> {
    let mut t: T = typed(res, &obj)?;
    let known = untyped(&t);
    let mut unknown = Vec::new();
    collect_unknown(&obj, &known, &mut Vec::new(), &mut unknown);
    defaults(&mut t);
    Ok(Decoded {
        object: untyped(&t),
        unknown,
    })
}

fn collect_unknown<'v>(
    input: &'v Value,
    typed: &Value,
    path: &mut Vec<Step<'v>>,
    out: &mut Vec<String>,
) {
    match (input, typed) {
        (Value::Object(i), Value::Object(t)) => {
            for (k, v) in i {
                if v.is_null() {
                    continue;
                }
                path.push(Step::Field(k));
                match t.get(k) {
                    None => out.push(path_text(path)),
                    Some(tv) => collect_unknown(v, tv, path, out),
                }
                path.pop();
            }
        }
        (Value::Array(i), Value::Array(t)) => {
            for (n, (a, b)) in i.iter().zip(t).enumerate() {
                path.push(Step::Index(n));
                collect_unknown(a, b, path, out);
                path.pop();
            }
        }
        _ => {}
    }
}

/// A step of a field path, formatted only when a field turns out unknown.
enum Step<'v> {
    Field(&'v str),
    Index(usize),
}

/// `spec.ports[0].nodeport`
fn path_text(path: &[Step]) -> String {
    let mut s = String::new();
    for step in path {
        match step {
            Step::Field(f) => {
                if !s.is_empty() {
                    s.push('.');
                }
                s.push_str(f);
            }
            Step::Index(i) => s.push_str(&format!("[{i}]")),
        }
    }
    s
}

pub fn has_finalizers(obj: &Value) -> bool {
    obj["metadata"]["finalizers"]
        .as_array()
        .is_some_and(|f| !f.is_empty())
}

/// The current time as objects carry it (RFC 3339, whole seconds).
pub fn now_rfc3339() -> String {
    timestamp(jiff::Timestamp::now())
}

pub fn timestamp(t: jiff::Timestamp) -> String {
    t.round(jiff::Unit::Second).unwrap_or(t).to_string()
}

fn bump_generation(obj: &mut Value) {
    if let Some(g) = obj["metadata"]["generation"].as_i64().filter(|&g| g > 0) {
        obj["metadata"]["generation"] = json!(g + 1);
    }
}

/// kube-apiserver's delete rules (`rest.BeforeDelete` and the generic store):
/// - an object already being deleted may only have its grace period shortened; otherwise the
///   request changes nothing (or removes it, when it was marked without a grace period and its
///   finalizers are gone);
/// - `grace` (the kind's `CheckGracefulDelete`) above zero marks the object with a deletion
///   timestamp that far ahead;
/// - with finalizers the object is marked as deleting and stays until they are removed;
/// - otherwise it is removed now.
pub fn plan_delete(
    old: &Value,
    requested: Option<i64>,
    grace: Option<i64>,
    now: jiff::Timestamp,
) -> DeletePlan {
    let meta = &old["metadata"];
    // Negative values mean one second on the delete path.
    let requested = requested.map(|r| if r < 0 { 1 } else { r });
    if let Some(ts) = meta["deletionTimestamp"].as_str() {
        let current = meta["deletionGracePeriodSeconds"].as_i64().unwrap_or(0);
        if current > 0
            && let Some(r) = requested.filter(|&r| r < current)
            && let Ok(at) = ts.parse::<jiff::Timestamp>()
        {
            let mut obj = old.clone();
            let due = at - jiff::SignedDuration::from_secs(current - r);
            obj["metadata"]["deletionTimestamp"] = json!(timestamp(due));
            obj["metadata"]["deletionGracePeriodSeconds"] = json!(r);
            return if r == 0 && !has_finalizers(old) {
                DeletePlan::Now
            } else {
                DeletePlan::Mark(obj)
            };
        }
        return if current == 0 && !has_finalizers(old) {
            DeletePlan::Now
        } else {
            DeletePlan::Pending
        };
    }
    let grace = grace.map(|g| if g < 0 { 1 } else { g });
    if let Some(g) = grace.filter(|&g| g > 0) {
        let mut obj = old.clone();
        bump_generation(&mut obj);
        obj["metadata"]["deletionTimestamp"] =
            json!(timestamp(now + jiff::SignedDuration::from_secs(g)));
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(g);
        return DeletePlan::Mark(obj);
    }
    if has_finalizers(old) {
        // markAsDeleting
        let mut obj = old.clone();
        bump_generation(&mut obj);
        obj["metadata"]["deletionTimestamp"] = json!(timestamp(now));
        obj["metadata"]["deletionGracePeriodSeconds"] = json!(0);
        return DeletePlan::Mark(obj);
    }
    DeletePlan::Now
}

/// kube-apiserver's `ShouldDeleteDuringUpdate`.
pub fn default_should_delete_during_update(new: &Value, old: &Value) -> bool {
    !has_finalizers(new)
        && old["metadata"].get("deletionTimestamp").is_some()
        && old["metadata"]["deletionGracePeriodSeconds"]
            .as_i64()
            .is_none_or(|g| g == 0)
}

/// A column definition of a `Table`.
pub fn column(name: &str, ty: &str, priority: i32, description: &str) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
}

pub fn name_column() -> Value {
    column(
        "Name",
        "string",
        0,
        "Name must be unique within a namespace.",
    )
}

pub fn age_column() -> Value {
    column(
        "Age",
        "string",
        0,
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    )
}
