//! Object storage semantics over the [`Store`]: keys, `resourceVersion`, server-set metadata,
//! preconditions, finalizers and graceful deletion. Kind-specific rules (defaulting,
//! validation, allocation) live in [`crate::kinds`].

use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Value, json};
use svcnet_core::selector::{FieldSelector, LabelSelector};
use svcnet_core::service_alloc::ServiceAllocators;
use svcnet_store::{KeyValue, Precondition, Store};

use crate::error::{ApiError, Result};
use crate::kinds::{self, Admitted};
use crate::resources::{self, Resource};

/// Server-wide settings.
#[derive(Clone, Debug)]
pub struct Config {
    pub service_cidrs: Vec<ipnet::IpNet>,
    pub node_port_range: svcnet_core::allocator::PortRange,
    /// Address clients reach the API at; published in the `kubernetes` Service's endpoints.
    pub advertise: std::net::SocketAddr,
    pub max_body_bytes: usize,
    pub bookmark_interval: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            service_cidrs: vec!["10.96.0.0/12".parse().expect("valid CIDR")],
            node_port_range: "30000-32767".parse().expect("valid range"),
            advertise: "127.0.0.1:6443".parse().expect("valid address"),
            max_body_bytes: 3 * 1024 * 1024,
            bookmark_interval: Duration::from_secs(30),
        }
    }
}

/// The shared state behind every request.
pub struct Registry {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) config: Config,
    pub(crate) allocators: Mutex<ServiceAllocators>,
    pub(crate) rng: Mutex<StdRng>,
    /// A handle to ourselves for tasks spawned from `&self` methods.
    me: std::sync::OnceLock<std::sync::Weak<Registry>>,
}

/// Options of a list call.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

pub struct ListPage {
    /// Objects as JSON with their `resourceVersion`, ready to send.
    pub items: Vec<Bytes>,
    pub revision: u64,
    pub continue_token: Option<String>,
}

#[derive(Clone, Debug, Default)]
pub struct DeleteOptions {
    pub grace_period_seconds: Option<i64>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

pub fn now_rfc3339() -> String {
    jiff::Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| jiff::Timestamp::now())
        .to_string()
}

pub fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
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

/// A written object as reads will return it, with `resourceVersion` set. The trip through
/// JSON bytes is deliberate: serde_json's float parsing is not exact, so a float in `obj` may
/// read back slightly different, and a write's response matches what a later GET returns.
fn read_back(obj: &Value, revision: u64) -> Result<Value> {
    decode_at(&serde_json::to_vec(obj).expect("serializable"), revision)
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
    let mut meta = obj.get("metadata").cloned().unwrap_or_else(|| json!({}));
    if let Some(m) = meta.as_object_mut() {
        m.remove("resourceVersion");
    }
    serde_json::to_writer(&mut out, &meta).expect("serializable");
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

impl Registry {
    pub async fn new(
        store: Arc<dyn Store>,
        config: Config,
    ) -> std::result::Result<Arc<Self>, String> {
        let allocators = ServiceAllocators::new(&config.service_cidrs, config.node_port_range)?;
        let registry = Arc::new(Self {
            store,
            config,
            allocators: Mutex::new(allocators),
            rng: Mutex::new(StdRng::from_os_rng()),
            me: std::sync::OnceLock::new(),
        });
        registry
            .repair_allocations()
            .await
            .map_err(|e| e.to_string())?;
        kinds::bootstrap(&registry)
            .await
            .map_err(|e| e.to_string())?;
        Ok(registry)
    }

    pub(crate) fn set_self_arc(self: &Arc<Self>) {
        let _ = self.me.set(Arc::downgrade(self));
    }

    pub(crate) fn self_arc(&self) -> Option<Arc<Self>> {
        self.me.get().and_then(std::sync::Weak::upgrade)
    }

    /// Finishes graceful Pod deletions whose grace period has passed. A node agent normally
    /// does this once the containers stopped; without one the grace period is the bound.
    pub async fn reap_expired_pods(&self) -> Result<usize> {
        let page = self
            .store
            .list(&resources::PODS.prefix(None), None, None)
            .await?;
        let now = jiff::Timestamp::now();
        let mut reaped = 0;
        for kv in &page.items {
            let obj = decode(kv)?;
            let Some(ts) = obj["metadata"]["deletionTimestamp"].as_str() else {
                continue;
            };
            let due = ts.parse::<jiff::Timestamp>().is_ok_and(|t| t <= now);
            let finalizers = obj["metadata"]["finalizers"]
                .as_array()
                .is_some_and(|f| !f.is_empty());
            if due && !finalizers {
                match self
                    .store
                    .delete(&kv.key, Precondition::ModRevision(kv.mod_revision))
                    .await
                {
                    Ok(_) => reaped += 1,
                    Err(svcnet_store::Error::Conflict { .. } | svcnet_store::Error::NotFound) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(reaped)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Rebuilds the allocator bitmaps from the stored Services (kube-apiserver's repair loop).
    async fn repair_allocations(&self) -> Result<()> {
        let all = self
            .store
            .list(&resources::SERVICES.prefix(None), None, None)
            .await?;
        let mut allocs = self.allocators.lock().expect("allocator lock");
        for kv in &all.items {
            let svc: k8s_openapi::api::core::v1::Service = serde_json::from_slice(&kv.value)
                .map_err(|e| {
                    ApiError::Internal(format!("stored Service {} is corrupt: {e}", kv.key))
                })?;
            for problem in allocs.repair(&svc.spec.unwrap_or_default()) {
                tracing::warn!(service = %kv.key, %problem, "allocation repair found a conflict");
            }
        }
        tracing::info!(
            services = all.items.len(),
            "allocations repaired from stored Services"
        );
        Ok(())
    }

    pub async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Value> {
        let kv = self.store.get(&res.key(ns, name)).await?;
        match kv {
            Some(kv) => decode(&kv),
            None => Err(not_found(res, name)),
        }
    }

    pub async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ListPage> {
        check_field_selector(res, &opts.fields)?;
        let prefix = res.prefix(ns);
        let (mut start, fixed_rev) = match &opts.continue_token {
            Some(t) if !t.is_empty() => {
                let (rv, start) = continue_decode(t)?;
                let compacted = self.store.compacted_revision().await?;
                if rv < compacted {
                    return Err(ApiError::Gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.".into(),
                    ));
                }
                (Some(start), Some(rv))
            }
            _ => (None, None),
        };
        let limit = opts.limit.filter(|&l| l > 0);
        let mut items = Vec::new();
        let mut revision = None;
        loop {
            let chunk = limit.map(|l| (l - items.len()).max(64));
            let page = self.store.list(&prefix, start.as_deref(), chunk).await?;
            revision.get_or_insert(page.revision);
            let mut last_key = None;
            let filtered = !opts.labels.is_empty() || !opts.fields.0.is_empty();
            for kv in &page.items {
                last_key = Some(kv.key.clone());
                if filtered && !matches(res, &decode(kv)?, &opts.labels, &opts.fields) {
                    continue;
                }
                items.push(raw_at(&kv.value, kv.mod_revision)?);
                if limit.is_some_and(|l| items.len() == l) {
                    let more_after =
                        page.more || kv.key != page.items.last().expect("non-empty").key;
                    let token = more_after
                        .then(|| continue_encode(fixed_rev.unwrap_or(page.revision), &kv.key));
                    return Ok(ListPage {
                        items,
                        revision: fixed_rev.unwrap_or(page.revision),
                        continue_token: token,
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
            revision: fixed_rev.or(revision).unwrap_or(0),
            continue_token: None,
        })
    }

    /// Checks that `ns` exists and is not being deleted.
    async fn check_namespace(&self, res: &Resource, ns: Option<&str>) -> Result<()> {
        let Some(ns) = ns.filter(|_| res.namespaced) else {
            return Ok(());
        };
        match self.store.get(&resources::NAMESPACES.key(None, ns)).await? {
            None => Err(not_found(&resources::NAMESPACES, ns)),
            Some(kv) => {
                let obj = decode(&kv)?;
                if obj["status"]["phase"] == "Terminating" {
                    return Err(ApiError::Forbidden(format!(
                        "{} \"{}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                        res.plural,
                        meta_str(&obj, "name").unwrap_or_default()
                    )));
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

    pub async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        mut obj: Value,
        dry_run: bool,
    ) -> Result<Value> {
        Self::check_identity(res, ns, &mut obj)?;
        let meta = obj["metadata"]
            .as_object_mut()
            .expect("metadata is an object");
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
            "managedFields",
            "selfLink",
        ] {
            meta.remove(f);
        }
        meta.insert("uid".into(), json!(new_uid()));
        meta.insert("creationTimestamp".into(), json!(now_rfc3339()));
        meta.insert("generation".into(), json!(1));
        self.check_namespace(res, ns).await?;
        let admitted = kinds::admit_create(self, res, &mut obj)?;
        let name = meta_str(&obj, "name").unwrap_or_default().to_owned();
        if dry_run {
            admitted.rollback(self);
            return Ok(obj);
        }
        let result = self
            .store
            .put(
                &res.key(ns, &name),
                encode(&obj),
                Precondition::MustNotExist,
            )
            .await;
        match result {
            Ok(kv) => {
                admitted.commit(self);
                read_back(&obj, kv.mod_revision)
            }
            Err(e) => {
                admitted.rollback(self);
                Err(match e {
                    svcnet_store::Error::AlreadyExists => ApiError::AlreadyExists {
                        group: res.group.into(),
                        plural: res.plural.into(),
                        name,
                    },
                    other => other.into(),
                })
            }
        }
    }

    /// PUT of the object (`status == false`) or of its status subresource.
    pub async fn update(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        mut obj: Value,
        status: bool,
        dry_run: bool,
    ) -> Result<Value> {
        Self::check_identity(res, ns, &mut obj)?;
        match meta_str(&obj, "name") {
            None | Some("") => obj["metadata"]["name"] = json!(name),
            Some(n) if n != name => {
                return Err(ApiError::BadRequest(format!(
                    "the name of the object ({n}) does not match the name on the URL ({name})"
                )));
            }
            _ => {}
        }
        let requested_rv = meta_str(&obj, "resourceVersion")
            .filter(|s| !s.is_empty())
            .map(parse_rv)
            .transpose()?;
        for _attempt in 0..8 {
            let key = res.key(ns, name);
            let current = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| not_found(res, name))?;
            let old = decode(&current)?;
            if let Some(rv) = requested_rv
                && rv != current.mod_revision
            {
                return Err(conflict(res, name));
            }
            let mut new = if status {
                let mut n = old.clone();
                n["status"] = obj.get("status").cloned().unwrap_or(Value::Null);
                n
            } else {
                obj.clone()
            };
            // Server-owned metadata carries over.
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
            ] {
                match old["metadata"].get(f) {
                    Some(v) => new["metadata"][f] = v.clone(),
                    None => {
                        if let Some(m) = new["metadata"].as_object_mut() {
                            m.remove(f);
                        }
                    }
                }
            }
            if !status && res.has_status {
                new["status"] = old.get("status").cloned().unwrap_or(Value::Null);
            }
            if new.get("status").is_some_and(Value::is_null) {
                new.as_object_mut().expect("object").remove("status");
            }
            if !status && new.get("spec") != old.get("spec") {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(1);
                new["metadata"]["generation"] = json!(g + 1);
            }
            let admitted = kinds::admit_update(self, res, &old, &mut new, status)?;
            if dry_run {
                admitted.rollback(self);
                return Ok(new);
            }
            // An object being deleted goes once its last finalizer is gone.
            let finalized = old["metadata"].get("deletionTimestamp").is_some()
                && new["metadata"]["finalizers"]
                    .as_array()
                    .is_none_or(Vec::is_empty)
                && res.plural != "namespaces"
                && res.plural != "pods";
            let result = if finalized {
                self.store
                    .delete(&key, Precondition::ModRevision(current.mod_revision))
                    .await
            } else {
                self.store
                    .put(
                        &key,
                        encode(&new),
                        Precondition::ModRevision(current.mod_revision),
                    )
                    .await
            };
            match result {
                Ok(kv) => {
                    admitted.commit(self);
                    if finalized {
                        kinds::after_delete(self, res, &old);
                    }
                    return read_back(&new, kv.mod_revision);
                }
                Err(svcnet_store::Error::Conflict { .. }) if requested_rv.is_none() => {
                    admitted.rollback(self);
                    continue;
                }
                Err(svcnet_store::Error::Conflict { .. }) => {
                    admitted.rollback(self);
                    return Err(conflict(res, name));
                }
                Err(svcnet_store::Error::NotFound) => {
                    admitted.rollback(self);
                    return Err(not_found(res, name));
                }
                Err(e) => {
                    admitted.rollback(self);
                    return Err(e.into());
                }
            }
        }
        Err(conflict(res, name))
    }

    pub async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Value> {
        for _attempt in 0..8 {
            let key = res.key(ns, name);
            let current = self
                .store
                .get(&key)
                .await?
                .ok_or_else(|| not_found(res, name))?;
            let old = decode(&current)?;
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
                return Err(conflict(res, name));
            }
            if let Some(marked) = kinds::graceful_delete(res, &old, opts) {
                if old["metadata"].get("deletionTimestamp").is_some() {
                    if res.plural == "namespaces" {
                        // A repeated delete restarts the content sweep (idempotent).
                        kinds::spawn_namespace_cleanup(self, name);
                    }
                    return Ok(old);
                }
                let result = self
                    .store
                    .put(
                        &key,
                        encode(&marked),
                        Precondition::ModRevision(current.mod_revision),
                    )
                    .await;
                match result {
                    Ok(kv) => {
                        if res.plural == "namespaces" {
                            kinds::spawn_namespace_cleanup(self, name);
                        }
                        return read_back(&marked, kv.mod_revision);
                    }
                    Err(svcnet_store::Error::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            match self
                .store
                .delete(&key, Precondition::ModRevision(current.mod_revision))
                .await
            {
                Ok(_) => {
                    kinds::after_delete(self, res, &old);
                    return Ok(old);
                }
                Err(svcnet_store::Error::Conflict { .. }) => continue,
                Err(svcnet_store::Error::NotFound) => return Err(not_found(res, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(res, name))
    }

    /// Deletes every object matching the selectors; returns the deleted objects.
    pub async fn delete_collection(
        &self,
        res: &Resource,
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
                Ok(v) => out.push(v),
                Err(ApiError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }
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

impl Admitted {
    pub(crate) fn commit(self, reg: &Registry) {
        if let Admitted::Service { release_after, .. } = self
            && !release_after.is_empty()
        {
            reg.allocators
                .lock()
                .expect("allocator lock")
                .release(&release_after);
        }
    }
    pub(crate) fn rollback(self, reg: &Registry) {
        if let Admitted::Service { fresh, .. } = self
            && !fresh.is_empty()
        {
            reg.allocators
                .lock()
                .expect("allocator lock")
                .release(&fresh);
        }
    }
}
