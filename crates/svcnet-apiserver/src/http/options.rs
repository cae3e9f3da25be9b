//! Request options, parsed and validated as kube-apiserver's parameter codec and
//! `Validate*Options` do: an unparsable integer is a 400, an invalid option a 422 `Status`
//! naming the option (kind `CreateOptions`, `PatchOptions`, … in group `meta.k8s.io`), and every
//! option kube-apiserver accepts is either honoured or refused here — none is dropped.

use axum::http::HeaderMap;
use serde_json::Value;
use svcnet_core::field::{BadValue, ErrorList, FieldError};
use svcnet_core::selector::{FieldSelector, LabelSelector};

use crate::error::{ApiError, Result};
use crate::registry::{self, DeleteOptions, FieldValidation, ListAt, ListOptions, WriteOptions};
use crate::resources::Subresource;

/// The query of one request, keeping repeated parameters (`dryRun=All&dryRun=All`).
pub struct Query(Vec<(String, String)>);

impl Query {
    pub fn parse(raw: Option<&str>) -> Result<Self> {
        let raw = raw.unwrap_or("");
        let pairs = serde_urlencoded_pairs(raw)?;
        Ok(Self(pairs))
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0
            .iter()
            .filter(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    /// A boolean as Go's parameter codec reads it: absent is false; `0` or `false` (any case)
    /// is false; anything else, empty included, is true.
    pub fn flag(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !(v == "0" || v.eq_ignore_ascii_case("false")),
        }
    }

    /// An integer option; a value that is not one is a 400 worded as Go's `strconv`.
    pub fn int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse::<i64>().map(Some).map_err(|_| {
                ApiError::BadRequest(format!("strconv.ParseInt: parsing {v:?}: invalid syntax"))
            }),
        }
    }
}

/// `application/x-www-form-urlencoded` pairs, percent-decoded.
fn serde_urlencoded_pairs(raw: &str) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for part in raw.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = part.split_once('=').unwrap_or((part, ""));
        out.push((decode(k)?, decode(v)?));
    }
    Ok(out)
}

fn decode(s: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        ApiError::BadRequest(format!("invalid query: bad escape in {s:?}"))
                    })?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| ApiError::BadRequest("invalid query: not UTF-8".into()))
}

/// A 422 on the options themselves.
fn invalid_options(kind: &str, errors: ErrorList) -> ApiError {
    ApiError::Invalid {
        group: "meta.k8s.io".into(),
        kind: kind.into(),
        name: String::new(),
        errors,
    }
}

fn checked(kind: &str, errors: ErrorList) -> Result<()> {
    if errors.is_empty() {
        Ok(())
    } else {
        Err(invalid_options(kind, errors))
    }
}

/// `ValidateDryRun`: only `All`.
fn validate_dry_run(values: &[String], errs: &mut ErrorList) -> bool {
    if values.iter().any(|v| v != "All") {
        errs.push(FieldError::not_supported(
            "dryRun",
            BadValue::list(values),
            &["All"],
        ));
    }
    !values.is_empty()
}

/// `ValidateFieldManager`: at most 128 bytes of printable characters.
fn validate_field_manager(m: &str, errs: &mut ErrorList) {
    if m.len() > 128 {
        errs.push(FieldError::too_long("fieldManager", 128));
    }
    for (i, c) in m.char_indices() {
        if c.is_control() {
            errs.push(FieldError::invalid(
                "fieldManager",
                m,
                format!("invalid character U+{:04X} (at position {i})", c as u32),
            ));
            break;
        }
    }
}

fn validate_field_validation(v: Option<&str>, errs: &mut ErrorList) -> FieldValidation {
    match v.unwrap_or("") {
        "" | "Warn" => FieldValidation::Warn,
        "Ignore" => FieldValidation::Ignore,
        "Strict" => FieldValidation::Strict,
        other => {
            errs.push(FieldError::not_supported(
                "fieldValidation",
                other,
                &["", "Ignore", "Strict", "Warn"],
            ));
            FieldValidation::Warn
        }
    }
}

/// The field manager a write is recorded under: `fieldManager`, or the User-Agent up to its
/// first `/` (`managerOrUserAgent`).
fn manager_or_user_agent(given: Option<&str>, headers: &HeaderMap) -> String {
    if let Some(m) = given.filter(|m| !m.is_empty()) {
        return m.to_owned();
    }
    let ua = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let head = ua.split('/').next().unwrap_or("");
    let mut out = String::new();
    for c in head.chars().filter(|c| !c.is_control()) {
        if out.len() + c.len_utf8() > 128 {
            break;
        }
        out.push(c);
    }
    out
}

/// Which write the options belong to.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Create,
    Update,
    Patch { apply: bool },
}

/// The options of a create, update or patch of `subresource`, and `force` (apply only).
pub fn write_options(
    q: &Query,
    headers: &HeaderMap,
    verb: Verb,
    subresource: Subresource,
) -> Result<(WriteOptions, bool)> {
    let kind = match verb {
        Verb::Create => "CreateOptions",
        Verb::Update => "UpdateOptions",
        Verb::Patch { .. } => "PatchOptions",
    };
    let mut errs = ErrorList::default();
    let given = q.get("fieldManager");
    let mut force = false;
    if let Verb::Patch { apply } = verb {
        if apply {
            force = q.flag("force");
            if given.unwrap_or("").is_empty() {
                errs.push(FieldError::required(
                    "fieldManager",
                    "is required for apply patch",
                ));
            }
        } else if q.has("force") {
            errs.push(FieldError::forbidden(
                "force",
                "may not be specified for non-apply patch",
            ));
        }
    }
    validate_field_manager(given.unwrap_or(""), &mut errs);
    let dry: Vec<String> = q.all("dryRun").into_iter().map(str::to_owned).collect();
    let dry_run = validate_dry_run(&dry, &mut errs);
    let field_validation = validate_field_validation(q.get("fieldValidation"), &mut errs);
    checked(kind, errs)?;
    let opts = WriteOptions {
        dry_run,
        manager: manager_or_user_agent(given, headers),
        subresource,
        field_validation,
    };
    Ok((opts, force))
}

/// Options of a delete: from the `DeleteOptions` body when there is one (then the query is
/// not read, as kube-apiserver does), else from the query.
pub fn delete_options(q: &Query, body: Option<Value>) -> Result<DeleteOptions> {
    let mut errs = ErrorList::default();
    let (grace, policy, orphan, dry, uid, rv) = match &body {
        Some(b) => {
            if !b.is_object() {
                return Err(ApiError::BadRequest(
                    "the body of a delete must be a DeleteOptions object".into(),
                ));
            }
            let grace = match b.get("gracePeriodSeconds") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.as_i64().ok_or_else(|| {
                    ApiError::BadRequest(format!("gracePeriodSeconds must be an integer, not {v}"))
                })?),
            };
            let string = |k: &str| -> Result<Option<String>> {
                match b.get(k) {
                    None | Some(Value::Null) => Ok(None),
                    Some(Value::String(s)) => Ok(Some(s.clone())),
                    Some(v) => Err(ApiError::BadRequest(format!(
                        "{k} must be a string, not {v}"
                    ))),
                }
            };
            let orphan = match b.get("orphanDependents") {
                None | Some(Value::Null) => None,
                Some(Value::Bool(o)) => Some(*o),
                Some(v) => {
                    return Err(ApiError::BadRequest(format!(
                        "orphanDependents must be a boolean, not {v}"
                    )));
                }
            };
            let dry: Vec<String> = match b.get("dryRun") {
                None | Some(Value::Null) => Vec::new(),
                Some(Value::Array(a)) => a
                    .iter()
                    .map(|v| {
                        v.as_str().map(str::to_owned).ok_or_else(|| {
                            ApiError::BadRequest(format!("dryRun must hold strings, not {v}"))
                        })
                    })
                    .collect::<Result<_>>()?,
                Some(v) => {
                    return Err(ApiError::BadRequest(format!(
                        "dryRun must be a list of strings, not {v}"
                    )));
                }
            };
            let pre = &b["preconditions"];
            let uid = pre["uid"].as_str().map(str::to_owned);
            let rv = pre["resourceVersion"].as_str().map(str::to_owned);
            (grace, string("propagationPolicy")?, orphan, dry, uid, rv)
        }
        None => (
            q.int("gracePeriodSeconds")?,
            q.get("propagationPolicy").map(str::to_owned),
            q.has("orphanDependents")
                .then(|| q.flag("orphanDependents")),
            q.all("dryRun").into_iter().map(str::to_owned).collect(),
            None,
            None,
        ),
    };
    if orphan.is_some() && policy.is_some() {
        errs.push(FieldError::invalid(
            "propagationPolicy",
            policy.as_deref().unwrap_or(""),
            "orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    if let Some(p) = policy.as_deref()
        && !["Foreground", "Background", "Orphan"].contains(&p)
    {
        errs.push(FieldError::not_supported(
            "propagationPolicy",
            p,
            &["Foreground", "Background", "Orphan", "nil"],
        ));
    }
    let dry_run = validate_dry_run(&dry, &mut errs);
    checked("DeleteOptions", errs)?;
    // Orphaning and foreground deletion need the garbage collector, which svcnet does not
    // run yet: refuse them rather than delete as if Background had been asked for.
    let orphaning = policy.as_deref() == Some("Orphan") || orphan == Some(true);
    if orphaning || policy.as_deref() == Some("Foreground") {
        return Err(ApiError::BadRequest(format!(
            "propagationPolicy {} is not supported: svcnet has no garbage collector yet; delete with propagationPolicy=Background (kubectl delete --cascade=background)",
            if orphaning { "Orphan" } else { "Foreground" }
        )));
    }
    Ok(DeleteOptions {
        grace_period_seconds: grace,
        precondition_uid: uid,
        precondition_rv: rv,
        dry_run,
    })
}

/// Options of a list (`ValidateListOptions`).
pub fn list_options(q: &Query) -> Result<ListOptions> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let limit = q.int("limit")?;
    let continue_token = q
        .get("continue")
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    let rv = q.get("resourceVersion").unwrap_or("");
    let rv_match = q.get("resourceVersionMatch").unwrap_or("");
    let mut errs = ErrorList::default();
    if !rv_match.is_empty() {
        if rv.is_empty() {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if continue_token.is_some() {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if !["Exact", "NotOlderThan"].contains(&rv_match) {
            errs.push(FieldError::not_supported(
                "resourceVersionMatch",
                rv_match,
                &["Exact", "NotOlderThan", ""],
            ));
        }
        if rv_match == "Exact" && rv == "0" {
            errs.push(FieldError::forbidden(
                "resourceVersionMatch",
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if q.has("sendInitialEvents") {
        errs.push(FieldError::forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ));
    }
    checked("ListOptions", errs)?;
    if continue_token.is_some() && !rv.is_empty() && rv != "0" {
        return Err(ApiError::BadRequest(
            "specifying resource version is not allowed when using continue".into(),
        ));
    }
    let at = match (rv, rv_match) {
        ("" | "0", _) => ListAt::Latest,
        (rv, "Exact") => ListAt::Exact(registry::parse_rv(rv)?),
        (rv, "NotOlderThan") => ListAt::NotOlderThan(registry::parse_rv(rv)?),
        // Legacy: an exact read when paging, "not older than" otherwise.
        (rv, _) if limit.is_some_and(|l| l > 0) => ListAt::Exact(registry::parse_rv(rv)?),
        (rv, _) => ListAt::NotOlderThan(registry::parse_rv(rv)?),
    };
    // resourceVersion=0 is served whole, as from kube-apiserver's watch cache.
    let limit = if rv == "0" { None } else { limit };
    Ok(ListOptions {
        labels,
        fields,
        limit: limit.filter(|&l| l > 0).map(|l| l as usize),
        continue_token,
        at,
    })
}

/// Options of a watch.
pub struct WatchOptions {
    pub list: ListOptions,
    /// The revision to watch from; `None` when none (or "0") was given.
    pub resource_version: Option<u64>,
    pub send_initial: Option<bool>,
    pub bookmarks: bool,
    pub timeout: std::time::Duration,
}

/// The longest watch a client can ask for (a year, in seconds).
const MAX_WATCH_TIMEOUT: u64 = 365 * 24 * 3600;

pub fn watch_options(q: &Query) -> Result<WatchOptions> {
    let labels = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let fields = FieldSelector::parse(q.get("fieldSelector").unwrap_or(""))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let timeout = q.int("timeoutSeconds")?;
    let send_initial = q
        .has("sendInitialEvents")
        .then(|| q.flag("sendInitialEvents"));
    let rv_match = q.get("resourceVersionMatch").unwrap_or("");
    let mut errs = ErrorList::default();
    match send_initial {
        Some(_) if rv_match != "NotOlderThan" => errs.push(FieldError::forbidden(
            "resourceVersionMatch",
            "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
        )),
        None if !rv_match.is_empty() => errs.push(FieldError::forbidden(
            "resourceVersionMatch",
            "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
        )),
        _ => {}
    }
    checked("ListOptions", errs)?;
    let resource_version = match q.get("resourceVersion") {
        None | Some("" | "0") => None,
        Some(rv) => Some(registry::parse_rv(rv)?),
    };
    Ok(WatchOptions {
        list: ListOptions {
            labels,
            fields,
            ..Default::default()
        },
        resource_version,
        send_initial,
        bookmarks: q.flag("allowWatchBookmarks"),
        timeout: std::time::Duration::from_secs(
            // Capped: a deadline past the clock's range would panic.
            timeout
                .filter(|&t| t > 0)
                .map_or(1800, |t| (t as u64).min(MAX_WATCH_TIMEOUT)),
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(s: &str) -> Query {
        Query::parse(Some(s)).unwrap()
    }

    fn invalid_field(e: ApiError) -> (String, String) {
        match e {
            ApiError::Invalid { kind, errors, .. } => (kind, errors.0[0].field.clone()),
            other => panic!("expected 422, got {other:?}"),
        }
    }

    #[test]
    fn dry_run_other_than_all_is_refused_and_repeats_are_read() {
        let h = HeaderMap::new();
        let e = write_options(
            &q("dryRun=All&dryRun=Foo"),
            &h,
            Verb::Create,
            Subresource::Main,
        )
        .unwrap_err();
        assert_eq!(invalid_field(e), ("CreateOptions".into(), "dryRun".into()));
        assert!(
            write_options(&q("dryRun=All"), &h, Verb::Update, Subresource::Main)
                .unwrap()
                .0
                .dry_run
        );
        assert!(
            !write_options(&q(""), &h, Verb::Update, Subresource::Main)
                .unwrap()
                .0
                .dry_run
        );
        let e = delete_options(&q(""), Some(serde_json::json!({"dryRun": ["Foo"]}))).unwrap_err();
        assert_eq!(invalid_field(e), ("DeleteOptions".into(), "dryRun".into()));
        assert!(
            delete_options(&q(""), Some(serde_json::json!({"dryRun": ["All"]})))
                .unwrap()
                .dry_run
        );
    }

    #[test]
    fn apply_needs_a_manager_and_force_needs_apply() {
        let h = HeaderMap::new();
        let e =
            write_options(&q(""), &h, Verb::Patch { apply: true }, Subresource::Main).unwrap_err();
        assert_eq!(
            invalid_field(e),
            ("PatchOptions".into(), "fieldManager".into())
        );
        let e = write_options(
            &q("force=false"),
            &h,
            Verb::Patch { apply: false },
            Subresource::Main,
        )
        .unwrap_err();
        assert_eq!(invalid_field(e), ("PatchOptions".into(), "force".into()));
        let (o, force) = write_options(
            &q("fieldManager=me&force=true"),
            &h,
            Verb::Patch { apply: true },
            Subresource::Main,
        )
        .unwrap();
        assert!(force && o.manager == "me");
    }

    #[test]
    fn the_manager_defaults_to_the_user_agent() {
        let mut h = HeaderMap::new();
        h.insert(
            "user-agent",
            "kubectl/v1.33.0 (linux/amd64) kubernetes/abc"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            write_options(&q(""), &h, Verb::Create, Subresource::Main)
                .unwrap()
                .0
                .manager,
            "kubectl"
        );
        let e = write_options(
            &q(&format!("fieldManager={}", "x".repeat(129))),
            &h,
            Verb::Create,
            Subresource::Main,
        )
        .unwrap_err();
        assert_eq!(invalid_field(e).1, "fieldManager");
    }

    #[test]
    fn integers_that_are_not_are_400s() {
        for bad in ["limit=abc", "gracePeriodSeconds=1.5"] {
            let r = if bad.starts_with("limit") {
                list_options(&q(bad)).map(|_| ())
            } else {
                delete_options(&q(bad), None).map(|_| ())
            };
            assert!(
                matches!(r, Err(ApiError::BadRequest(m)) if m.contains("invalid syntax")),
                "{bad}"
            );
        }
        assert!(matches!(
            watch_options(&q("timeoutSeconds=x")),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn list_resource_version_rules() {
        let e = list_options(&q("resourceVersionMatch=Exact")).unwrap_err();
        assert_eq!(
            invalid_field(e),
            ("ListOptions".into(), "resourceVersionMatch".into())
        );
        let e = list_options(&q("resourceVersion=0&resourceVersionMatch=Exact")).unwrap_err();
        assert_eq!(invalid_field(e).1, "resourceVersionMatch");
        assert!(matches!(
            list_options(&q("resourceVersion=5&continue=abc")),
            Err(ApiError::BadRequest(_))
        ));
        assert_eq!(
            list_options(&q("resourceVersion=5&resourceVersionMatch=Exact"))
                .unwrap()
                .at,
            ListAt::Exact(5)
        );
        assert_eq!(
            list_options(&q("resourceVersion=5&limit=2")).unwrap().at,
            ListAt::Exact(5)
        );
        assert_eq!(
            list_options(&q("resourceVersion=5")).unwrap().at,
            ListAt::NotOlderThan(5)
        );
        assert_eq!(
            list_options(&q("resourceVersion=0&limit=2")).unwrap().limit,
            None
        );
    }

    #[test]
    fn propagation_policies_without_a_garbage_collector_are_refused() {
        let e = delete_options(&q("propagationPolicy=Foo"), None).unwrap_err();
        assert_eq!(
            invalid_field(e),
            ("DeleteOptions".into(), "propagationPolicy".into())
        );
        assert!(delete_options(&q("propagationPolicy=Background"), None).is_ok());
        assert!(matches!(
            delete_options(&q("propagationPolicy=Orphan"), None),
            Err(ApiError::BadRequest(_))
        ));
        assert!(matches!(
            delete_options(&q("propagationPolicy=Foreground"), None),
            Err(ApiError::BadRequest(_))
        ));
    }
}
