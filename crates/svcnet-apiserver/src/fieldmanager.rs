//! `metadata.managedFields` on every write, between the registry and the pure structured
//! merge in [`svcnet_core::structured_merge`]: which managers a write starts from (the stored
//! ones, or what the client sent), the apply checks kube-apiserver makes before merging, and
//! the 409 an apply conflict answers with.

use serde_json::{Value, json};
use svcnet_core::structured_merge::{self as sm, ApplyError, Managers, Requested};

use crate::error::{ApiError, Result};
use crate::resources::{Resource, Subresource};
use crate::strategy::Strategy;

/// Who writes, through which endpoint.
pub struct Manager<'a> {
    pub name: &'a str,
    pub kind: &'static str,
    pub api_version: String,
    pub subresource: Subresource,
    /// Fields this endpoint never changes (the strategy's reset fields).
    pub reset: &'static [&'static str],
}

impl Manager<'_> {
    fn request<'r>(&'r self, now: &'r str) -> sm::Request<'r> {
        sm::Request {
            kind: self.kind,
            manager: self.name,
            api_version: &self.api_version,
            subresource: self.subresource.as_str(),
            reset: self.reset,
            now,
        }
    }
}

fn stored(obj: Option<&Value>) -> Managers {
    obj.and_then(|o| o["metadata"].get("managedFields"))
        .and_then(|v| Managers::decode(v).ok())
        .unwrap_or_default()
}

fn set_managed(obj: &mut Value, managers: &Managers) {
    if managers.is_empty() {
        if let Some(m) = obj["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
    } else {
        obj["metadata"]["managedFields"] = managers.encode();
    }
}

/// Records a create, update or non-apply patch of `new` over `live` (`None` on create).
/// Writes to the object itself may reset (`[]`) or replace the managers; subresource writes
/// keep the stored ones.
pub fn update(live: Option<&Value>, new: &mut Value, m: &Manager) {
    let managers = match m.subresource {
        Subresource::Main => match sm::requested(new["metadata"].get("managedFields")) {
            Requested::Keep => stored(live),
            Requested::Reset => Managers::default(),
            Requested::Replace(given) => given,
        },
        _ => stored(live),
    };
    let now = crate::strategy::now_rfc3339();
    match sm::update(live, new, managers, &m.request(&now)) {
        Ok(updated) => set_managed(new, &updated),
        // kube-apiserver keeps the write and drops managedFields when tracking fails
        // (UpdateNoErrors), so no stale ownership is stored.
        Err(e) => {
            tracing::warn!(error = %e, "managedFields not updated");
            set_managed(new, &Managers::default());
        }
    }
}

/// The checks kube-apiserver makes on an apply configuration before merging it.
pub fn check_apply_config(res: &Resource, strategy: &dyn Strategy, config: &Value) -> Result<()> {
    if !config.is_object() {
        return Err(ApiError::BadRequest(
            "error decoding patch: the apply configuration must be an object".into(),
        ));
    }
    let av = config["apiVersion"].as_str().unwrap_or("");
    let kind = config["kind"].as_str().unwrap_or("");
    if av != res.api_version() || kind != res.kind {
        let (g, v) = av.rsplit_once('/').unwrap_or(("", av));
        return Err(ApiError::BadRequest(format!(
            "invalid object type: {g}/{v}, Kind={kind}"
        )));
    }
    if config["metadata"]
        .get("managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApiError::BadRequest(
            "metadata.managedFields must be nil".into(),
        ));
    }
    // Apply always refuses fields the kind does not have, whatever fieldValidation says.
    // kube-apiserver answers these with a 500 (kubernetes#122480); they are the client's
    // mistake, so this is a 400.
    let unknown = strategy.decode(config.clone())?.unknown;
    if !unknown.is_empty() {
        let ns = config["metadata"]["namespace"].as_str().unwrap_or("");
        let name = config["metadata"]["name"].as_str().unwrap_or("");
        return Err(ApiError::BadRequest(format!(
            "failed to create typed patch object ({ns}/{name}; {}, Kind={}): {}",
            if res.group.is_empty() {
                format!("/{}", res.version)
            } else {
                res.api_version()
            },
            res.kind,
            unknown
                .iter()
                .map(|f| format!(".{f}: field not declared in schema"))
                .collect::<Vec<_>>()
                .join("\n")
        )));
    }
    Ok(())
}

/// Applies `config` to `live` (`None`: creates). The result carries its `managedFields` and
/// still has to be defaulted and admitted.
pub fn apply(live: Option<&Value>, config: &Value, m: &Manager, force: bool) -> Result<Value> {
    if live.is_none()
        && let Some(uid) = config["metadata"]["uid"].as_str().filter(|u| !u.is_empty())
    {
        return Err(ApiError::Conflict {
            group: String::new(),
            plural: String::new(),
            name: config["metadata"]["name"].as_str().unwrap_or("").into(),
            detail: format!(
                "uid mismatch: the provided object specified uid {uid}, and no existing object was found"
            ),
        });
    }
    let now = crate::strategy::now_rfc3339();
    let mut live_obj = live.cloned();
    if let Some(l) = live_obj.as_mut()
        && let Some(meta) = l["metadata"].as_object_mut()
    {
        meta.remove("managedFields");
    }
    match sm::apply(
        live_obj.as_ref(),
        config,
        stored(live),
        &m.request(&now),
        force,
    ) {
        Ok(applied) => {
            let mut obj = applied.object;
            if let Some(meta) = obj["metadata"].as_object_mut() {
                meta.remove("resourceVersion");
            }
            if let Some(rv) = config["metadata"].get("resourceVersion") {
                obj["metadata"]["resourceVersion"] = rv.clone();
            }
            set_managed(&mut obj, &applied.managers);
            Ok(obj)
        }
        Err(ApplyError::Conflicts(conflicts)) => Err(ApiError::ApplyConflict {
            message: sm::conflicts_message(&conflicts),
            causes: conflicts
                .iter()
                .map(|c| {
                    json!({
                        "reason": "FieldManagerConflict",
                        "message": format!("conflict with {}", c.manager.describe()),
                        "field": svcnet_core::fieldpath::path_string(&c.path),
                    })
                })
                .collect(),
        }),
        Err(ApplyError::Invalid(e)) => Err(ApiError::BadRequest(format!(
            "failed to create typed patch object: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// When ownership cannot be computed, the write goes on without managedFields (kube's
    /// UpdateNoErrors), never with the stale or client-sent ones.
    #[test]
    fn a_write_whose_fields_cannot_be_tracked_drops_managed_fields() {
        let m = Manager {
            name: "ctl",
            kind: "Service",
            api_version: "v1".into(),
            subresource: Subresource::Main,
            reset: &["status"],
        };
        let mut ok = json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}});
        update(None, &mut ok, &m);
        assert!(ok["metadata"]["managedFields"].is_array(), "{ok}");
        let mut bad = ok.clone();
        bad["spec"]["ports"] = json!([7]);
        update(Some(&ok), &mut bad, &m);
        assert!(bad["metadata"].get("managedFields").is_none(), "{bad}");
    }
}
