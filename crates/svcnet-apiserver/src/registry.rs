//! The generic store over [`Store`], as kube-apiserver's `genericregistry.Store`: keys,
//! `resourceVersion`, server-set metadata, preconditions, create-on-update, dry run,
//! `managedFields`, graceful deletion and finalizers, paged lists at one revision. Everything
//! that differs per kind is asked of the kind's [`Strategy`]; the registry never asks which
//! kind it holds.

use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use svcnet_core::selector::{FieldSelector, LabelSelector};
use svcnet_store::{KeyValue, Precondition, Revision, Store};

use crate::config::Config;
use crate::error::{ApiError, Result};
use crate::fieldmanager::{self, Manager};
use crate::kinds;
use crate::resources::{Resource, Subresource};
use crate::strategy::{DeletePlan, Strategy};

/// The shared state behind every request.
pub struct Registry {
    store: Arc<dyn Store>,
    config: Config,
    /// One strategy per served kind, in the order of [`kinds::ALL`].
    strategies: Vec<Box<dyn Strategy>>,
}

/// Which revision a list reads (`resourceVersion` and `resourceVersionMatch`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ListAt {
    /// The newest state (no `resourceVersion`, or `"0"`).
    #[default]
    Latest,
    /// Any state at least this new: served at the newest.
    NotOlderThan(Revision),
    /// Exactly this revision (410 Expired once compacted).
    Exact(Revision),
}

/// Options of a list call.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
    pub at: ListAt,
}

pub struct ListPage {
    /// Objects as JSON with their `resourceVersion`, ready to send.
    pub items: Vec<Bytes>,
    pub revision: u64,
    pub continue_token: Option<String>,
}

/// `fieldValidation`: what a write does with fields the kind does not have.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FieldValidation {
    /// Drop them silently.
    Ignore,
    /// Drop them and say so in `Warning` headers (the default).
    #[default]
    Warn,
    /// Refuse the write (400).
    Strict,
}

/// Options every write carries.
#[derive(Clone, Debug)]
pub struct WriteOptions {
    pub dry_run: bool,
    /// The field manager (`fieldManager`, or the one derived from the User-Agent).
    pub manager: String,
    pub subresource: Subresource,
    pub field_validation: FieldValidation,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            dry_run: false,
            manager: String::new(),
            subresource: Subresource::Main,
            field_validation: FieldValidation::Warn,
        }
    }
}

impl WriteOptions {
    /// A write by `manager` to the object itself.
    pub fn by(manager: &str) -> Self {
        Self {
            manager: manager.to_owned(),
            ..Default::default()
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    pub dry_run: bool,
}

/// What a create, update or patch stored (or, in a dry run, would store).
pub struct Written {
    pub object: Value,
    /// The write created the object (HTTP 201).
    pub created: bool,
    pub warnings: Vec<String>,
}

/// What a delete did: the object as deleted (or as marked), and whether it left the store.
pub struct Deleted {
    pub object: Value,
    pub removed: bool,
}

/// A patch of one of the kinds kube-apiserver accepts.
pub enum Patch {
    Json(json_patch::Patch),
    Merge(Value),
    Strategic(Value),
    /// Server-side apply of this configuration.
    Apply {
        config: Value,
        force: bool,
    },
}

pub use crate::strategy::now_rfc3339;

pub fn new_uid() -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let b: [u8; 16] = rand::random();
    let h: String = b
        .iter()
        .flat_map(|x| {
            [
                HEX[(x >> 4) as usize] as char,
                HEX[(x & 15) as usize] as char,
            ]
        })
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

/// Turns a stored key-value into the API object, with `resourceVersion` set.
pub fn decode(kv: &KeyValue) -> Result<Value> {
    decode_at(&kv.value, kv.mod_revision)
}

pub fn decode_at(raw: &[u8], revision: u64) -> Result<Value> {
    let mut v: Value = serde_json::from_slice(raw)
        .map_err(|e| ApiError::Internal(format!("corrupt stored object: {e}")))?;
    v["metadata"]["resourceVersion"] = json!(revision.to_string());
    Ok(v)
}

/// A written object as reads will return it, with `resourceVersion` set. serde_json parses
/// floats exactly (`float_roundtrip`), so `obj` is what decoding its stored bytes gives.
fn read_back(mut obj: Value, revision: u64) -> Value {
    obj["metadata"]["resourceVersion"] = json!(revision.to_string());
    obj
}

/// Stored objects begin with their metadata (see [`encode`]), so the `resourceVersion` can be
/// spliced into the bytes: lists and watch events are sent without parsing each object.
const STORED_HEAD: &[u8] = b"{\"metadata\":{";

/// The stored bytes as API JSON with `resourceVersion` set.
pub fn raw_at(raw: &[u8], revision: u64) -> Result<Bytes> {
    use std::io::Write;
    if raw.starts_with(STORED_HEAD) && raw.len() > STORED_HEAD.len() {
        let mut out = Vec::with_capacity(raw.len() + 32);
        out.extend_from_slice(STORED_HEAD);
        write!(out, "\"resourceVersion\":\"{revision}\"").expect("writing to a Vec");
        if raw[STORED_HEAD.len()] != b'}' {
            out.push(b',');
        }
        out.extend_from_slice(&raw[STORED_HEAD.len()..]);
        return Ok(out.into());
    }
    Ok(serde_json::to_vec(&decode_at(raw, revision)?)
        .expect("serializable")
        .into())
}

/// The stored form: `metadata` (without `resourceVersion`) first, then the other fields.
fn encode(obj: &Value) -> Bytes {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(b"{\"metadata\":");
    match obj.get("metadata").and_then(Value::as_object) {
        Some(meta) => {
            out.push(b'{');
            let mut first = true;
            for (k, v) in meta.iter().filter(|(k, _)| *k != "resourceVersion") {
                if !first {
                    out.push(b',');
                }
                first = false;
                serde_json::to_writer(&mut out, k).expect("serializable");
                out.push(b':');
                serde_json::to_writer(&mut out, v).expect("serializable");
            }
            out.push(b'}');
        }
        None => out.extend_from_slice(b"{}"),
    }
    for (k, v) in obj.as_object().into_iter().flatten() {
        if k == "metadata" {
            continue;
        }
        out.push(b',');
        serde_json::to_writer(&mut out, k).expect("serializable");
        out.push(b':');
        serde_json::to_writer(&mut out, v).expect("serializable");
    }
    out.push(b'}');
    out.into()
}

pub(crate) fn parse_rv(rv: &str) -> Result<u64> {
    rv.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "invalid resourceVersion {rv:?}: must be a decimal revision"
        ))
    })
}

/// The value of a field-selector field on `obj`, or `None` when the resource does not support
/// selecting on it.
pub fn field_value(res: &Resource, obj: &Value, field: &str) -> Option<String> {
    match field {
        "metadata.name" => return Some(meta_str(obj, "name").unwrap_or("").to_owned()),
        "metadata.namespace" => return Some(meta_str(obj, "namespace").unwrap_or("").to_owned()),
        _ => {}
    }
    if !res.fields.contains(&field) {
        return None;
    }
    let mut cur = obj;
    for part in field.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return Some(String::new()),
        }
    }
    Some(match cur {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    })
}

pub fn check_field_selector(res: &Resource, sel: &FieldSelector) -> Result<()> {
    for r in &sel.0 {
        if !matches!(r.field.as_str(), "metadata.name" | "metadata.namespace")
            && !res.fields.contains(&r.field.as_str())
        {
            return Err(ApiError::BadRequest(format!(
                "field label not supported: {}",
                r.field
            )));
        }
    }
    Ok(())
}

pub fn matches(
    res: &Resource,
    obj: &Value,
    labels: &LabelSelector,
    fields: &FieldSelector,
) -> bool {
    if !labels.is_empty() {
        let map: Option<std::collections::BTreeMap<String, String>> = obj
            .get("metadata")
            .and_then(|m| m.get("labels"))
            .and_then(|l| serde_json::from_value(l.clone()).ok());
        if !labels.matches(map.as_ref()) {
            return false;
        }
    }
    fields.0.is_empty() || fields.matches(|f| field_value(res, obj, f))
}

/// The 410 for a continue token whose revision was compacted, with a token that goes on
/// from the same key at the newest revision.
fn expired_continue(head: u64, start: &str) -> ApiError {
    ApiError::Expired {
        message: "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into(),
        continue_token: Some(continue_encode(head, start)),
    }
}

fn continue_encode(revision: u64, start: &str) -> String {
    let raw = json!({"v": "meta.k8s.io/v1", "rv": revision, "start": start}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn continue_decode(token: &str) -> Result<(u64, String)> {
    let bad = || {
        ApiError::BadRequest("continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)".into())
    };
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let start = v["start"].as_str().ok_or_else(bad)?.to_owned();
    Ok((rv, start))
}

fn too_large(requested: u64, current: u64) -> ApiError {
    ApiError::TooLargeResourceVersion { requested, current }
}

pub fn not_found(res: &Resource, name: &str) -> ApiError {
    ApiError::NotFound {
        group: res.group.into(),
        plural: res.plural.into(),
        name: name.into(),
    }
}

pub fn conflict(res: &Resource, name: &str) -> ApiError {
    ApiError::Conflict {
        group: res.group.into(),
        plural: res.plural.into(),
        name: name.into(),
        detail: "the object has been modified; please apply your changes to the latest version and try again".into(),
    }
}

/// Runs a strategy's admission on `obj` (and `old`) without their `managedFields`, which no
/// strategy reads and which are costly to decode into typed objects, then puts them back.
fn admit_without_managed_fields<T>(
    obj: &mut Value,
    mut old: Option<&mut Value>,
    admit: impl FnOnce(&mut Value, Option<&Value>) -> Result<T>,
) -> Result<T> {
    fn take(v: &mut Value) -> Option<Value> {
        v["metadata"]
            .as_object_mut()
            .and_then(|m| m.remove("managedFields"))
    }
    fn put_back(v: &mut Value, managed: Option<Value>) {
        if let Some(m) = managed
            && let Some(meta) = v["metadata"].as_object_mut()
        {
            meta.insert("managedFields".into(), m);
        }
    }
    let managed = take(obj);
    let old_managed = old.as_deref_mut().and_then(take);
    let result = admit(obj, old.as_deref());
    put_back(obj, managed);
    if let Some(o) = old {
        put_back(o, old_managed);
    }
    result
}

/// The stored bytes of an object without `metadata.managedFields`, for readers that decode
/// typed objects and have no use for them (the controllers' caches). Stored objects start
/// with their metadata (see [`encode`]); anything else is returned as it is.
pub(crate) fn without_managed_fields(raw: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    use std::borrow::Cow;
    /// The index after the JSON string starting at `i`.
    fn string_end(b: &[u8], mut i: usize) -> Option<usize> {
        i += 1;
        while i < b.len() {
            match b[i] {
                b'\\' => i += 2,
                b'"' => return Some(i + 1),
                _ => i += 1,
            }
        }
        None
    }
    /// The index after the JSON value starting at `i`.
    fn value_end(b: &[u8], mut i: usize) -> Option<usize> {
        let mut depth = 0usize;
        while i < b.len() {
            match b[i] {
                b'"' => {
                    i = string_end(b, i)?;
                    if depth == 0 {
                        return Some(i);
                    }
                    continue;
                }
                b'{' | b'[' => depth += 1,
                b'}' | b']' if depth == 0 => return Some(i),
                b'}' | b']' => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(i + 1);
                    }
                }
                b',' if depth == 0 => return Some(i),
                _ => {}
            }
            i += 1;
        }
        None
    }
    if !raw.starts_with(STORED_HEAD) {
        return Cow::Borrowed(raw);
    }
    let mut i = STORED_HEAD.len();
    let mut prev_comma = None;
    while i < raw.len() && raw[i] == b'"' {
        let key_start = i;
        let Some(key_end) = string_end(raw, i) else {
            return Cow::Borrowed(raw);
        };
        if raw.get(key_end) != Some(&b':') {
            return Cow::Borrowed(raw);
        }
        let Some(end) = value_end(raw, key_end + 1) else {
            return Cow::Borrowed(raw);
        };
        if &raw[key_start..key_end] == b"\"managedFields\"" {
            let (from, to) = match (raw.get(end), prev_comma) {
                (Some(b','), _) => (key_start, end + 1),
                (_, Some(c)) => (c, end),
                _ => (key_start, end),
            };
            let mut out = Vec::with_capacity(raw.len() - (to - from));
            out.extend_from_slice(&raw[..from]);
            out.extend_from_slice(&raw[to..]);
            return Cow::Owned(out);
        }
        if raw.get(end) != Some(&b',') {
            break;
        }
        prev_comma = Some(end);
        i = end + 1;
    }
    Cow::Borrowed(raw)
}

/// Metadata the server owns on every object, carried over from the stored version on update.
const SERVER_META: &[&str] = &[
    "uid",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "generation",
];

/// The new version one attempt of an update-like write produced, before admission.
struct Next {
    obj: Value,
    /// Its `managedFields` are already computed (an apply).
    tracked: bool,
}

impl Next {
    fn untracked(obj: Value) -> Self {
        Self {
            obj,
            tracked: false,
        }
    }
}

impl Registry {
    /// Builds every kind's strategy and restores their in-memory state (allocations) from the
    /// stored objects.
    pub async fn new(
        store: Arc<dyn Store>,
        config: Config,
    ) -> std::result::Result<Arc<Self>, String> {
        let strategies = kinds::ALL
            .iter()
            .map(|k| (k.strategy)(&config))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let registry = Self {
            store,
            config,
            strategies,
        };
        registry.restore().await.map_err(|e| e.to_string())?;
        Ok(Arc::new(registry))
    }

    async fn restore(&self) -> Result<()> {
        for s in &self.strategies {
            let Some(r) = s.restore() else { continue };
            let res = s.resource();
            let all = self.store.list(&res.prefix(None), None, None, None).await?;
            for kv in &all.items {
                r.restore(&decode(kv)?)?;
            }
            tracing::info!(
                resource = res.plural,
                objects = all.items.len(),
                "state restored from stored objects"
            );
        }
        Ok(())
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The strategy of a served resource.
    pub(crate) fn strategy(&self, res: &Resource) -> &dyn Strategy {
        self.strategies
            .iter()
            .find(|s| std::ptr::eq(s.resource(), res))
            .map(AsRef::as_ref)
            .expect("every resource comes from kinds::ALL")
    }

    /// The served resource at `group/version/plural`.
    pub fn find(&self, group: &str, version: &str, plural: &str) -> Option<&'static Resource> {
        kinds::resources().find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    pub async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Value> {
        match self.store.get(&res.key(ns, name)).await? {
            Some(kv) => decode(&kv),
            None => Err(not_found(res, name)),
        }
    }

    /// A GET with `resourceVersion`: any version at least as new as `min` ("0" means any).
    pub async fn get_not_older_than(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        min: u64,
    ) -> Result<Value> {
        let head = self.store.revision().await?;
        if min > head {
            return Err(too_large(min, head));
        }
        self.get(res, ns, name).await
    }

    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage> {
        check_field_selector(res, &opts.fields)?;
        let prefix = res.prefix(ns);
        let head = self.store.revision().await?;
        // Every page of a paged list is read at the revision of the first.
        let (mut start, at) = match opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rv, start) = continue_decode(t)?;
                let compacted = self.store.compacted_revision().await?;
                if rv < compacted {
                    return Err(expired_continue(head, &start));
                }
                if rv > head {
                    return Err(too_large(rv, head));
                }
                (Some(start), Some(rv))
            }
            None => match opts.at {
                ListAt::Latest => (None, None),
                ListAt::NotOlderThan(rv) if rv > head => return Err(too_large(rv, head)),
                ListAt::NotOlderThan(_) => (None, None),
                ListAt::Exact(rv) if rv > head => return Err(too_large(rv, head)),
                ListAt::Exact(rv) => (None, Some(rv)),
            },
        };
        let resumed_at = start.clone();
        let limit = opts.limit.filter(|&l| l > 0);
        let filtered = !opts.labels.is_empty() || !opts.fields.0.is_empty();
        let mut items = Vec::new();
        let mut revision = at;
        loop {
            let chunk = limit.map(|l| (l - items.len()).max(64));
            let page = match self
                .store
                .list(&prefix, start.as_deref(), chunk, revision)
                .await
            {
                // Compacted between the check above and this read: the same 410 with a
                // fresh token for a continued list.
                Err(svcnet_store::Error::Compacted { .. }) => {
                    return Err(match &resumed_at {
                        Some(start) => expired_continue(head, start),
                        _ => ApiError::Gone(
                            "The resourceVersion for the provided list is too old.".into(),
                        ),
                    });
                }
                other => other?,
            };
            let rev = *revision.get_or_insert(page.revision);
            let mut last_key = None;
            for (i, kv) in page.items.iter().enumerate() {
                last_key = Some(kv.key.clone());
                if filtered && !matches(res, &decode(kv)?, &opts.labels, &opts.fields) {
                    continue;
                }
                items.push(raw_at(&kv.value, kv.mod_revision)?);
                if limit.is_some_and(|l| items.len() == l) {
                    let more_after = page.more || i + 1 < page.items.len();
                    return Ok(ListPage {
                        items,
                        revision: rev,
                        continue_token: more_after.then(|| continue_encode(rev, &kv.key)),
                    });
                }
            }
            if !page.more {
                break;
            }
            start = last_key;
        }
        Ok(ListPage {
            items,
            revision: revision.unwrap_or(head),
            continue_token: None,
        })
    }

    /// Checks that `ns` exists and is not being deleted (the NamespaceLifecycle admission).
    async fn check_namespace(
        &self,
        res: &Resource,
        ns: Option<&str>,
        object: &Value,
    ) -> Result<()> {
        let Some(ns) = ns.filter(|_| res.namespaced) else {
            return Ok(());
        };
        match self.store.get(&kinds::NAMESPACES.key(None, ns)).await? {
            None => Err(not_found(&kinds::NAMESPACES, ns)),
            Some(kv) => {
                // Only the phase matters: skip decoding the rest.
                #[derive(serde::Deserialize)]
                struct Phase {
                    #[serde(default)]
                    status: PhaseStatus,
                }
                #[derive(serde::Deserialize, Default)]
                struct PhaseStatus {
                    #[serde(default)]
                    phase: String,
                }
                let ns_obj: Phase = serde_json::from_slice(&kv.value)
                    .map_err(|e| ApiError::Internal(format!("corrupt stored namespace: {e}")))?;
                if ns_obj.status.phase == "Terminating" {
                    let name = meta_str(object, "name")
                        .filter(|n| !n.is_empty())
                        .or_else(|| meta_str(object, "generateName"))
                        .unwrap_or_default();
                    return Err(ApiError::Denied {
                        message: format!(
                            "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                            res.plural,
                        ),
                        details: json!({"name": name, "kind": res.plural, "causes": [{
                            "reason": "NamespaceTerminating",
                            "message": format!("namespace {ns} is being terminated"),
                            "field": "metadata.namespace",
                        }]}),
                    });
                }
                Ok(())
            }
        }
    }

    /// Checks `apiVersion`, `kind` and namespace of a request body against the URL.
    fn check_identity(res: &Resource, ns: Option<&str>, obj: &mut Value) -> Result<()> {
        if !obj.is_object() {
            return Err(ApiError::BadRequest(
                "the body of the request must be a JSON object".into(),
            ));
        }
        let kind = obj.get("kind").and_then(Value::as_str).unwrap_or("");
        if !kind.is_empty() && kind != res.kind {
            return Err(ApiError::BadRequest(format!(
                "the kind in the data ({kind}) does not match the expected kind ({})",
                res.kind
            )));
        }
        let av = obj.get("apiVersion").and_then(Value::as_str).unwrap_or("");
        if !av.is_empty() && av != res.api_version() {
            return Err(ApiError::BadRequest(format!(
                "the API version in the data ({av}) does not match the expected API version ({})",
                res.api_version()
            )));
        }
        obj["kind"] = json!(res.kind);
        obj["apiVersion"] = json!(res.api_version());
        if !obj.get("metadata").is_some_and(Value::is_object) {
            obj["metadata"] = json!({});
        }
        if res.namespaced {
            let ns = ns.unwrap_or("");
            match meta_str(obj, "namespace") {
                None | Some("") => obj["metadata"]["namespace"] = json!(ns),
                Some(given) if given != ns => {
                    return Err(ApiError::BadRequest(
                        "the namespace of the provided object does not match the namespace sent on the request".into(),
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `name` on the URL against the body's (`checkName`).
    fn check_name(obj: &Value, name: &str) -> Result<()> {
        match meta_str(obj, "name") {
            None | Some("") => Err(ApiError::BadRequest(format!(
                "the name of the object ({name} based on URL) was undeterminable: name must be provided"
            ))),
            Some(n) if n != name => Err(ApiError::BadRequest(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            ))),
            _ => Ok(()),
        }
    }

    fn manager<'a>(&self, res: &'static Resource, opts: &'a WriteOptions) -> Manager<'a> {
        Manager {
            name: &opts.manager,
            kind: res.kind,
            api_version: res.api_version(),
            subresource: opts.subresource,
            reset: self.strategy(res).reset_fields(opts.subresource),
        }
    }

    /// Fills the metadata the server sets on create (`FillObjectMetaSystemFields`, generated
    /// names) and drops what a client may not set.
    fn fill_create_meta(obj: &mut Value) {
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("checked to be an object");
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
            && let Some(prefix) = meta.get("generateName").and_then(Value::as_str)
            && !prefix.is_empty()
        {
            const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
            let suffix: String = (0..5)
                .map(|_| ALPHABET[rand::random_range(0..ALPHABET.len())] as char)
                .collect();
            let name = format!("{prefix}{suffix}");
            meta.insert("name".into(), json!(name));
        }
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(f);
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
    }

    /// Decodes a body or patch result through the kind (type check, unknown fields dropped,
    /// defaults) and applies `fieldValidation` to the unknown fields.
    fn decode(
        &self,
        res: &Resource,
        obj: Value,
        validation: FieldValidation,
        warnings: &mut Vec<String>,
    ) -> Result<Value> {
        let d = self.strategy(res).decode(obj)?;
        if !d.unknown.is_empty() {
            match validation {
                FieldValidation::Strict => {
                    let fields: Vec<String> = d
                        .unknown
                        .iter()
                        .map(|f| format!("unknown field \"{f}\""))
                        .collect();
                    return Err(ApiError::BadRequest(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        res.kind,
                        res.version,
                        res.kind,
                        fields.join(", ")
                    )));
                }
                FieldValidation::Warn => {
                    warnings.extend(d.unknown.iter().map(|f| format!("unknown field \"{f}\"")));
                }
                FieldValidation::Ignore => {}
            }
        }
        Ok(d.object)
    }

    pub async fn create(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        Self::check_identity(res, ns, &mut obj)?;
        let mut warnings = Vec::new();
        let mut obj = self.decode(res, obj, opts.field_validation, &mut warnings)?;
        fieldmanager::update(None, &mut obj, &self.manager(res, opts));
        let mut written = self.insert(res, ns, obj, opts.dry_run).await?;
        warnings.append(&mut written.warnings);
        written.warnings = warnings;
        Ok(written)
    }

    /// Admits `obj` as a new object and stores it (create, create-on-update, apply).
    async fn insert(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Written> {
        self.check_namespace(res, ns, &obj).await?;
        Self::fill_create_meta(&mut obj);
        let admission = admit_without_managed_fields(&mut obj, None, |obj, _| {
            self.strategy(res).admit_create(obj)
        })?;
        let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
        let key = res.key(ns, &name);
        let already = || ApiError::AlreadyExists {
            group: res.group.into(),
            plural: res.plural.into(),
            name: name.clone(),
        };
        if dry_run {
            let warnings = admission.rollback();
            if self.store.get(&key).await?.is_some() {
                return Err(already());
            }
            return Ok(Written {
                object: obj,
                created: true,
                warnings,
            });
        }
        let bytes = encode(&obj);
        match self
            .store
            .put(&key, bytes.clone(), Precondition::MustNotExist)
            .await
        {
            Ok(kv) => Ok(Written {
                object: read_back(obj, kv.mod_revision),
                created: true,
                warnings: admission.commit(),
            }),
            Err(e) => {
                admission.rollback();
                Err(match e {
                    svcnet_store::Error::AlreadyExists => already(),
                    other => other.into(),
                })
            }
        }
    }

    /// PUT of the object or of a subresource; kinds that allow it create a missing object.
    pub async fn update(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        opts: &WriteOptions,
    ) -> Result<Written> {
        Self::check_identity(res, ns, &mut obj)?;
        Self::check_name(&obj, name)?;
        let requested_rv = meta_str(&obj, "resourceVersion")
            .filter(|s| !s.is_empty())
            .map(parse_rv)
            .transpose()?;
        let uid = meta_str(&obj, "uid")
            .filter(|u| !u.is_empty())
            .map(str::to_owned);
        let mut warnings = Vec::new();
        let obj = self.decode(res, obj, opts.field_validation, &mut warnings)?;
        let create =
            self.strategy(res).allow_create_on_update() && opts.subresource == Subresource::Main;
        let mut written = self.write(res, ns, name, opts, requested_rv.is_some(), |current| {
            // A uid in the body is a precondition (`Preconditions()` of the update).
            let stored_uid = current
                .map(|c| c.1["metadata"]["uid"].as_str().unwrap_or_default())
                .unwrap_or_default();
            if let Some(uid) = &uid
                && uid != stored_uid
            {
                return Err(ApiError::Conflict {
                    group: res.group.into(),
                    plural: res.plural.into(),
                    name: name.into(),
                    detail: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {stored_uid}"
                    ),
                });
            }
            match current {
                None if create => Ok(Next::untracked(obj.clone())),
                None => Err(not_found(res, name)),
                Some((kv, _)) => {
                    if requested_rv.is_some_and(|rv| rv != kv.mod_revision) {
                        return Err(conflict(res, name));
                    }
                    Ok(Next::untracked(obj.clone()))
                }
            }
        })
        .await?;
        warnings.append(&mut written.warnings);
        written.warnings = warnings;
        Ok(written)
    }

    /// PATCH of the object or of a subresource; an apply patch creates a missing object.
    pub async fn patch(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        patch: &Patch,
        opts: &WriteOptions,
    ) -> Result<Written> {
        let strategy = self.strategy(res);
        let manager = self.manager(res, opts);
        let pinned = match patch {
            Patch::Apply { config, .. } => {
                fieldmanager::check_apply_config(res, strategy, config)?;
                meta_str(config, "resourceVersion").is_some_and(|s| !s.is_empty())
            }
            _ => false,
        };
        let mut warnings = Vec::new();
        let mut written = self
            .write(res, ns, name, opts, pinned, |current| {
                let current = current.map(|c| c.1);
                let mut patched = match (patch, current) {
                    // Subresources never create (kube-apiserver's status stores pass
                    // forceAllowCreate=false).
                    (Patch::Apply { .. }, None) if opts.subresource != Subresource::Main => {
                        return Err(not_found(res, name));
                    }
                    (Patch::Apply { config, force }, _) => {
                        fieldmanager::apply(current, config, &manager, *force)?
                    }
                    (_, None) => return Err(not_found(res, name)),
                    (Patch::Json(p), Some(cur)) => {
                        let mut doc = cur.clone();
                        json_patch::patch(&mut doc, p).map_err(|e| ApiError::Invalid {
                            group: res.group.into(),
                            kind: res.kind.into(),
                            name: name.into(),
                            errors: svcnet_core::field::FieldError::invalid("", "", e.to_string())
                                .into(),
                        })?;
                        doc
                    }
                    (Patch::Merge(p), Some(cur)) => {
                        let mut doc = cur.clone();
                        json_patch::merge(&mut doc, p);
                        doc
                    }
                    (Patch::Strategic(p), Some(cur)) => {
                        svcnet_core::strategic_merge::apply(res.kind, cur, p)
                            .map_err(|e| ApiError::BadRequest(e.to_string()))?
                    }
                };
                if !patched.is_object() || !patched["metadata"].is_object() {
                    return Err(ApiError::BadRequest(
                        "the patch produced something other than an object with metadata".into(),
                    ));
                }
                // A resourceVersion in the result is a precondition on the stored version.
                let rv = &patched["metadata"]["resourceVersion"];
                if let Some(cur) = current
                    && !rv.is_null()
                    && *rv != cur["metadata"]["resourceVersion"]
                {
                    return Err(conflict(res, name));
                }
                Self::check_identity(res, ns, &mut patched)?;
                Self::check_name(&patched, name)?;
                warnings.clear();
                let patched = self.decode(res, patched, opts.field_validation, &mut warnings)?;
                Ok(Next {
                    obj: patched,
                    tracked: matches!(patch, Patch::Apply { .. }),
                })
            })
            .await?;
        warnings.append(&mut written.warnings);
        written.warnings = warnings;
        Ok(written)
    }

    /// The update loop shared by PUT and PATCH: reads the stored object, lets `next` build the
    /// new version from it (or a new object, when there is none), records the field managers,
    /// admits it through the strategy and writes it with compare-and-swap. A lost race is
    /// retried unless the request `pinned` a resourceVersion.
    async fn write(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        opts: &WriteOptions,
        pinned: bool,
        mut next: impl FnMut(Option<(&KeyValue, &Value)>) -> Result<Next>,
    ) -> Result<Written> {
        let strategy = self.strategy(res);
        let manager = self.manager(res, opts);
        let key = res.key(ns, name);
        for _attempt in 0..8 {
            let current = self.store.get(&key).await?;
            let Some(current) = current else {
                let mut new = next(None)?;
                if !new.tracked {
                    fieldmanager::update(None, &mut new.obj, &manager);
                }
                return match self.insert(res, ns, new.obj, opts.dry_run).await {
                    // Created by someone else meanwhile: update that.
                    Err(ApiError::AlreadyExists { .. }) if !pinned => continue,
                    other => other,
                };
            };
            let mut old = decode(&current)?;
            let mut new = next(Some((&current, &old)))?;
            if !new.tracked {
                fieldmanager::update(Some(&old), &mut new.obj, &manager);
            }
            let mut new = new.obj;
            self.carry_over(res, &old, &mut new, opts.subresource);
            let admission = admit_without_managed_fields(&mut new, Some(&mut old), |new, old| {
                strategy.admit_update(new, old.expect("given"), opts.subresource)
            })?;
            let remove = strategy.should_delete_during_update(&new, &old);
            if opts.dry_run {
                let warnings = admission.rollback();
                // What would be stored, at the stored version's resourceVersion.
                return Ok(Written {
                    object: read_back(new, current.mod_revision),
                    created: false,
                    warnings,
                });
            }
            let bytes = encode(&new);
            // A write that changes nothing is not stored: no new resourceVersion, no event.
            if !remove && bytes == current.value {
                return Ok(Written {
                    object: old,
                    created: false,
                    warnings: admission.rollback(),
                });
            }
            let result = if remove {
                self.store
                    .delete(&key, Precondition::ModRevision(current.mod_revision))
                    .await
            } else {
                self.store
                    .put(
                        &key,
                        bytes.clone(),
                        Precondition::ModRevision(current.mod_revision),
                    )
                    .await
            };
            match result {
                Ok(kv) => {
                    // Removed: the new version was never stored, so what it reserved goes back,
                    // and what the old one held is released.
                    let warnings = if remove {
                        let w = admission.rollback();
                        strategy.after_delete(&old);
                        w
                    } else {
                        admission.commit()
                    };
                    return Ok(Written {
                        object: read_back(new, kv.mod_revision),
                        created: false,
                        warnings,
                    });
                }
                Err(e) => {
                    admission.rollback();
                    match e {
                        svcnet_store::Error::Conflict { .. } | svcnet_store::Error::NotFound
                            if !pinned => {}
                        svcnet_store::Error::Conflict { .. } => return Err(conflict(res, name)),
                        svcnet_store::Error::NotFound => return Err(not_found(res, name)),
                        other => return Err(other.into()),
                    }
                }
            }
        }
        Err(conflict(res, name))
    }

    /// `rest.BeforeUpdate`'s generic part: server-owned metadata comes from the stored
    /// version, and a write to one part of the object leaves the others as stored.
    fn carry_over(&self, res: &Resource, old: &Value, new: &mut Value, sub: Subresource) {
        for f in SERVER_META {
            match old["metadata"].get(*f) {
                Some(v) => new["metadata"][*f] = v.clone(),
                None => {
                    if let Some(m) = new["metadata"].as_object_mut() {
                        m.remove(*f);
                    }
                }
            }
        }
        let keep = |new: &mut Value, field: &str| match old.get(field) {
            Some(v) => new[field] = v.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove(field);
                }
            }
        };
        match sub {
            Subresource::Main if res.has_status => keep(new, "status"),
            Subresource::Main => {}
            Subresource::Status => keep(new, "spec"),
            Subresource::Finalize => {}
        }
    }

    pub async fn delete(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        let strategy = self.strategy(res);
        let key = res.key(ns, name);
        for _attempt in 0..8 {
            let current = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| not_found(res, name))?;
            let old = decode(&current)?;
            strategy.check_delete(&old)?;
            if let Some(uid) = &opts.precondition_uid
                && meta_str(&old, "uid") != Some(uid.as_str())
            {
                return Err(ApiError::Conflict {
                    group: res.group.into(),
                    plural: res.plural.into(),
                    name: name.into(),
                    detail: format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        meta_str(&old, "uid").unwrap_or_default()
                    ),
                });
            }
            if let Some(rv) = &opts.precondition_rv
                && parse_rv(rv)? != current.mod_revision
            {
                return Err(ApiError::Conflict {
                    group: res.group.into(),
                    plural: res.plural.into(),
                    name: name.into(),
                    detail: format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        current.mod_revision
                    ),
                });
            }
            let plan =
                strategy.plan_delete(&old, opts.grace_period_seconds, jiff::Timestamp::now());
            let marked = match plan {
                DeletePlan::Pending => {
                    return Ok(Deleted {
                        object: old,
                        removed: false,
                    });
                }
                DeletePlan::Mark(marked) => marked,
                DeletePlan::Now => {
                    if opts.dry_run {
                        return Ok(Deleted {
                            object: old,
                            removed: true,
                        });
                    }
                    match self
                        .store
                        .delete(&key, Precondition::ModRevision(current.mod_revision))
                        .await
                    {
                        Ok(_) => {
                            strategy.after_delete(&old);
                            return Ok(Deleted {
                                object: old,
                                removed: true,
                            });
                        }
                        Err(svcnet_store::Error::Conflict { .. }) => continue,
                        Err(svcnet_store::Error::NotFound) => return Err(not_found(res, name)),
                        Err(e) => return Err(e.into()),
                    }
                }
            };
            if opts.dry_run {
                return Ok(Deleted {
                    object: marked,
                    removed: false,
                });
            }
            let bytes = encode(&marked);
            match self
                .store
                .put(
                    &key,
                    bytes.clone(),
                    Precondition::ModRevision(current.mod_revision),
                )
                .await
            {
                Ok(kv) => {
                    return Ok(Deleted {
                        object: read_back(marked, kv.mod_revision),
                        removed: false,
                    });
                }
                Err(svcnet_store::Error::Conflict { .. }) => continue,
                Err(svcnet_store::Error::NotFound) => return Err(not_found(res, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(res, name))
    }

    /// Deletes every object matching the selectors; returns what each delete answered.
    pub async fn delete_collection(
        &self,
        res: &'static Resource,
        ns: Option<&str>,
        opts: &ListOptions,
        del: &DeleteOptions,
    ) -> Result<Vec<Value>> {
        let page = self
            .list(
                res,
                ns,
                &ListOptions {
                    limit: None,
                    continue_token: None,
                    ..opts.clone()
                },
            )
            .await?;
        let mut out = Vec::new();
        for raw in page.items {
            let obj: Value =
                serde_json::from_slice(&raw).map_err(|e| ApiError::Internal(e.to_string()))?;
            let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
            let ns = meta_str(&obj, "namespace").map(str::to_owned);
            match self.delete(res, ns.as_deref(), &name, del).await {
                Ok(d) => out.push(d.object),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    /// Answers the readiness check of the store: a read of the current revision.
    pub async fn check_store(&self) -> Result<()> {
        self.store.revision().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_fields_are_cut_out_of_stored_bytes() {
        for obj in [
            json!({"metadata": {"managedFields": [{"manager": "a", "fieldsV1": {"f:x": {}}}], "name": "n"}, "spec": {"s": "}\""}}),
            json!({"metadata": {"name": "n", "managedFields": [{"m": "{[\"]}"}]}, "spec": {}}),
            json!({"metadata": {"a": 1, "managedFields": [], "z": [1, {"b": 2}]}, "kind": "K"}),
            json!({"metadata": {"name": "n"}, "spec": {"managedFields": 1}}),
        ] {
            let raw = encode(&obj);
            let cut = without_managed_fields(&raw);
            let got: Value = serde_json::from_slice(&cut).expect("still JSON");
            let mut want = obj.clone();
            want["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("managedFields");
            assert_eq!(got, want, "{}", String::from_utf8_lossy(&raw));
        }
    }
}
