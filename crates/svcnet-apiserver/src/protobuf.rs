//! Decoding of the Kubernetes protobuf envelope for the request bodies typed `kubectl`
//! commands send (`kubectl create namespace`, `kubectl create service …`).
//!
//! The wire format is `k8s\0` followed by a `runtime.Unknown` message whose `raw` field holds
//! the object. Only the messages those commands produce are described here; a field we do not
//! know is an error rather than silently dropped.

use serde_json::{Map, Value, json};

use crate::error::{ApiError, Result};

pub const CONTENT_TYPE: &str = "application/vnd.kubernetes.protobuf";
const MAGIC: &[u8] = b"k8s\0";

#[derive(Clone, Copy)]
enum Kind {
    Str,
    Int,
    Bool,
    Msg(&'static Schema),
    /// `map<string, string>` (repeated entries with key 1, value 2).
    StrMap,
    IntOrString,
    Time,
}

struct Field {
    number: u64,
    name: &'static str,
    kind: Kind,
    repeated: bool,
}

type Schema = [Field];

const fn f(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: false,
    }
}

const fn r(number: u64, name: &'static str, kind: Kind) -> Field {
    Field {
        number,
        name,
        kind,
        repeated: true,
    }
}

static OWNER_REFERENCE: &Schema = &[
    f(1, "kind", Kind::Str),
    f(3, "name", Kind::Str),
    f(4, "uid", Kind::Str),
    f(5, "apiVersion", Kind::Str),
    f(6, "controller", Kind::Bool),
    f(7, "blockOwnerDeletion", Kind::Bool),
];

static OBJECT_META: &Schema = &[
    f(1, "name", Kind::Str),
    f(2, "generateName", Kind::Str),
    f(3, "namespace", Kind::Str),
    f(4, "selfLink", Kind::Str),
    f(5, "uid", Kind::Str),
    f(6, "resourceVersion", Kind::Str),
    f(7, "generation", Kind::Int),
    f(8, "creationTimestamp", Kind::Time),
    f(9, "deletionTimestamp", Kind::Time),
    f(10, "deletionGracePeriodSeconds", Kind::Int),
    f(11, "labels", Kind::StrMap),
    f(12, "annotations", Kind::StrMap),
    r(13, "ownerReferences", Kind::Msg(OWNER_REFERENCE)),
    r(14, "finalizers", Kind::Str),
];

static NAMESPACE_SPEC: &Schema = &[r(1, "finalizers", Kind::Str)];
static NAMESPACE_STATUS: &Schema = &[f(1, "phase", Kind::Str)];
static NAMESPACE: &Schema = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(NAMESPACE_SPEC)),
    f(3, "status", Kind::Msg(NAMESPACE_STATUS)),
];

static CLIENT_IP_CONFIG: &Schema = &[f(1, "timeoutSeconds", Kind::Int)];
static SESSION_AFFINITY_CONFIG: &Schema = &[f(1, "clientIP", Kind::Msg(CLIENT_IP_CONFIG))];
static SERVICE_PORT: &Schema = &[
    f(1, "name", Kind::Str),
    f(2, "protocol", Kind::Str),
    f(3, "port", Kind::Int),
    f(4, "targetPort", Kind::IntOrString),
    f(5, "nodePort", Kind::Int),
    f(6, "appProtocol", Kind::Str),
];
static SERVICE_SPEC: &Schema = &[
    r(1, "ports", Kind::Msg(SERVICE_PORT)),
    f(2, "selector", Kind::StrMap),
    f(3, "clusterIP", Kind::Str),
    f(4, "type", Kind::Str),
    r(5, "externalIPs", Kind::Str),
    f(7, "sessionAffinity", Kind::Str),
    f(8, "loadBalancerIP", Kind::Str),
    r(9, "loadBalancerSourceRanges", Kind::Str),
    f(10, "externalName", Kind::Str),
    f(11, "externalTrafficPolicy", Kind::Str),
    f(12, "healthCheckNodePort", Kind::Int),
    f(13, "publishNotReadyAddresses", Kind::Bool),
    f(
        14,
        "sessionAffinityConfig",
        Kind::Msg(SESSION_AFFINITY_CONFIG),
    ),
    f(17, "ipFamilyPolicy", Kind::Str),
    r(18, "clusterIPs", Kind::Str),
    r(19, "ipFamilies", Kind::Str),
    f(20, "allocateLoadBalancerNodePorts", Kind::Bool),
    f(21, "loadBalancerClass", Kind::Str),
    f(22, "internalTrafficPolicy", Kind::Str),
    f(23, "trafficDistribution", Kind::Str),
];
static LOAD_BALANCER_INGRESS: &Schema = &[f(1, "ip", Kind::Str), f(2, "hostname", Kind::Str)];
static LOAD_BALANCER_STATUS: &Schema = &[r(1, "ingress", Kind::Msg(LOAD_BALANCER_INGRESS))];
static SERVICE_STATUS: &Schema = &[f(1, "loadBalancer", Kind::Msg(LOAD_BALANCER_STATUS))];
static SERVICE: &Schema = &[
    f(1, "metadata", Kind::Msg(OBJECT_META)),
    f(2, "spec", Kind::Msg(SERVICE_SPEC)),
    f(3, "status", Kind::Msg(SERVICE_STATUS)),
];

struct Reader<'a> {
    buf: &'a [u8],
}

fn bad(msg: impl Into<String>) -> ApiError {
    ApiError::BadRequest(format!("invalid protobuf body: {}", msg.into()))
}

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self
                .buf
                .split_first()
                .ok_or_else(|| bad("truncated varint"))?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(bad("varint too long"))
    }

    fn bytes(&mut self) -> Result<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| bad("length overflow"))?;
        if len > self.buf.len() {
            return Err(bad("truncated field"));
        }
        let (head, rest) = self.buf.split_at(len);
        self.buf = rest;
        Ok(head)
    }

    /// The next (field number, value) pair; values are varints or byte strings.
    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            2 => Wire::Bytes(self.bytes()?),
            1 | 5 => return Err(bad("fixed-width fields are not used by these kinds")),
            t => return Err(bad(format!("unsupported wire type {t}"))),
        };
        Ok(Some((key >> 3, value)))
    }
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn string(w: Wire) -> Result<String> {
    match w {
        Wire::Bytes(b) => String::from_utf8(b.to_vec()).map_err(|_| bad("string is not UTF-8")),
        Wire::Varint(_) => Err(bad("expected a string")),
    }
}

fn varint(w: Wire) -> Result<u64> {
    match w {
        Wire::Varint(v) => Ok(v),
        Wire::Bytes(_) => Err(bad("expected a number")),
    }
}

/// Go marshals non-pointer fields even when empty; an empty string, a zero number or a zero
/// timestamp means "not set" in these messages, as the JSON form would omit them.
fn is_unset(field: &Field, v: &Value) -> bool {
    match v {
        Value::String(s) => s.is_empty(),
        Value::Number(n) => n.as_i64() == Some(0) && field.name != "timeoutSeconds",
        Value::Null => true,
        _ => false,
    }
}

fn message(buf: &[u8], schema: &Schema) -> Result<Value> {
    let mut out = Map::new();
    let mut rd = Reader { buf };
    while let Some((number, w)) = rd.next()? {
        let field = schema.iter().find(|f| f.number == number).ok_or_else(|| {
            let known: Vec<&str> = schema.iter().map(|f| f.name).collect();
            bad(format!(
                "unknown field number {number} in a message with fields {known:?}"
            ))
        })?;
        let value = match field.kind {
            Kind::Str => Value::String(string(w)?),
            // int32/int64 as two's complement varints.
            Kind::Int => json!(varint(w)? as i64),
            Kind::Bool => json!(varint(w)? != 0),
            Kind::Msg(inner) => match w {
                Wire::Bytes(b) => message(b, inner)?,
                Wire::Varint(_) => return Err(bad("expected a message")),
            },
            Kind::Time => match w {
                Wire::Bytes(b) => {
                    let t = message(b, &[f(1, "seconds", Kind::Int), f(2, "nanos", Kind::Int)])?;
                    let secs = t["seconds"].as_i64().unwrap_or(0);
                    if secs == 0 {
                        continue;
                    }
                    let ts = jiff::Timestamp::from_second(secs).map_err(|e| bad(e.to_string()))?;
                    Value::String(ts.to_string())
                }
                Wire::Varint(_) => return Err(bad("expected a timestamp")),
            },
            Kind::IntOrString => match w {
                Wire::Bytes(b) => {
                    let v = message(
                        b,
                        &[
                            f(1, "type", Kind::Int),
                            f(2, "intVal", Kind::Int),
                            f(3, "strVal", Kind::Str),
                        ],
                    )?;
                    if v["type"].as_i64() == Some(1) {
                        v["strVal"].clone()
                    } else {
                        json!(v["intVal"].as_i64().unwrap_or(0))
                    }
                }
                Wire::Varint(_) => return Err(bad("expected an IntOrString")),
            },
            Kind::StrMap => {
                let Wire::Bytes(b) = w else {
                    return Err(bad("expected a map entry"));
                };
                let e = message(b, &[f(1, "key", Kind::Str), f(2, "value", Kind::Str)])?;
                let entry = out.entry(field.name).or_insert_with(|| json!({}));
                entry[e["key"].as_str().unwrap_or("")] =
                    e.get("value").cloned().unwrap_or(json!(""));
                continue;
            }
        };
        if !field.repeated && is_unset(field, &value) {
            continue;
        }
        if field.repeated {
            out.entry(field.name)
                .or_insert_with(|| json!([]))
                .as_array_mut()
                .expect("array")
                .push(value);
        } else {
            out.insert(field.name.into(), value);
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body into the JSON form of the object.
pub fn decode(body: &[u8]) -> Result<Value> {
    let rest = body
        .strip_prefix(MAGIC)
        .ok_or_else(|| bad("missing the k8s envelope"))?;
    let mut rd = Reader { buf: rest };
    let (mut api_version, mut kind, mut raw) = (String::new(), String::new(), None);
    while let Some((number, w)) = rd.next()? {
        match (number, w) {
            (1, Wire::Bytes(tm)) => {
                let t = message(
                    tm,
                    &[f(1, "apiVersion", Kind::Str), f(2, "kind", Kind::Str)],
                )?;
                api_version = t["apiVersion"].as_str().unwrap_or("").to_owned();
                kind = t["kind"].as_str().unwrap_or("").to_owned();
            }
            (2, Wire::Bytes(b)) => raw = Some(b),
            (3 | 4, _) => {}
            _ => return Err(bad("malformed envelope")),
        }
    }
    let raw = raw.ok_or_else(|| bad("the envelope holds no object"))?;
    let schema = match (api_version.as_str(), kind.as_str()) {
        ("v1", "Namespace") => NAMESPACE,
        ("v1", "Service") => SERVICE,
        (av, k) => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "protobuf bodies are supported for v1 Namespace and Service only (got {av} {k}); send JSON"
            )));
        }
    };
    let mut obj = message(raw, schema)?;
    obj["apiVersion"] = json!(api_version);
    obj["kind"] = json!(kind);
    Ok(obj)
}
