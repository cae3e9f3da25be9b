//! Field paths and sets of them, as structured-merge-diff's `fieldpath` package defines them:
//! the unit of field ownership in `managedFields`, with their `FieldsV1` JSON encoding and the
//! path text kube-apiserver prints in apply conflicts.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::{Map, Value};

/// One step of a path: a struct field or map key, an item of an associative list picked out
/// by its key fields, an item of a set, or a list position.
#[derive(Clone, Debug)]
pub enum PathElement {
    Field(String),
    /// Key fields sorted by name.
    Key(Vec<(String, Value)>),
    Value(Value),
    Index(usize),
}

/// structured-merge-diff's value order: numbers < strings < bools < lists < maps < null.
pub fn compare_values(a: &Value, b: &Value) -> Ordering {
    fn rank(v: &Value) -> u8 {
        match v {
            Value::Number(_) => 0,
            Value::String(_) => 1,
            Value::Bool(_) => 2,
            Value::Array(_) => 3,
            Value::Object(_) => 4,
            Value::Null => 5,
        }
    }
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i.cmp(&j),
            _ => x
                .as_f64()
                .unwrap_or(f64::NAN)
                .total_cmp(&y.as_f64().unwrap_or(f64::NAN)),
        },
        (Value::String(x), Value::String(y)) => x.cmp(y),
        (Value::Bool(x), Value::Bool(y)) => x.cmp(y),
        (Value::Array(x), Value::Array(y)) => {
            for (p, q) in x.iter().zip(y) {
                match compare_values(p, q) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        (Value::Object(x), Value::Object(y)) => {
            // Maps compare as their sorted (key, value) lists.
            for ((k1, v1), (k2, v2)) in x.iter().zip(y.iter()) {
                match k1.cmp(k2).then_with(|| compare_values(v1, v2)) {
                    Ordering::Equal => {}
                    o => return o,
                }
            }
            x.len().cmp(&y.len())
        }
        _ => rank(a).cmp(&rank(b)),
    }
}

impl PathElement {
    fn rank(&self) -> u8 {
        match self {
            PathElement::Field(_) => 0,
            PathElement::Key(_) => 1,
            PathElement::Value(_) => 2,
            PathElement::Index(_) => 3,
        }
    }

    /// The key in a `FieldsV1` object: `f:name`, `k:{"port":80}`, `v:"x"`, `i:3`.
    pub fn encode(&self) -> String {
        match self {
            PathElement::Field(n) => {
                let mut s = String::with_capacity(2 + n.len());
                s.push_str("f:");
                s.push_str(n);
                s
            }
            PathElement::Key(fields) => {
                let mut s = String::from("k:{");
                for (i, (name, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        s.push(',');
                    }
                    s.push_str(&compact_json(&Value::String(name.clone())));
                    s.push(':');
                    s.push_str(&compact_json(v));
                }
                s.push('}');
                s
            }
            PathElement::Value(v) => format!("v:{}", compact_json(v)),
            PathElement::Index(i) => format!("i:{i}"),
        }
    }

    /// Parses a `FieldsV1` key; `None` for prefixes structured-merge-diff drops.
    pub fn decode(s: &str) -> Result<Option<Self>, String> {
        let Some((prefix, rest)) = s.split_once(':') else {
            return Ok(None);
        };
        Ok(Some(match prefix {
            "f" => PathElement::Field(rest.to_owned()),
            "k" => {
                let v: Value =
                    serde_json::from_str(rest).map_err(|e| format!("parsing key {rest:?}: {e}"))?;
                let Value::Object(m) = v else {
                    return Err(format!("key {rest:?} is not a JSON object"));
                };
                let mut fields: Vec<(String, Value)> = m.into_iter().collect();
                fields.sort_by(|a, b| a.0.cmp(&b.0));
                PathElement::Key(fields)
            }
            "v" => PathElement::Value(
                serde_json::from_str(rest).map_err(|e| format!("parsing value {rest:?}: {e}"))?,
            ),
            "i" => PathElement::Index(
                rest.parse()
                    .map_err(|_| format!("parsing index {rest:?}"))?,
            ),
            _ => return Ok(None),
        }))
    }
}

impl Ord for PathElement {
    fn cmp(&self, other: &Self) -> Ordering {
        match (self, other) {
            (PathElement::Field(a), PathElement::Field(b)) => a.cmp(b),
            (PathElement::Key(a), PathElement::Key(b)) => {
                for ((n1, v1), (n2, v2)) in a.iter().zip(b) {
                    match n1.cmp(n2).then_with(|| compare_values(v1, v2)) {
                        Ordering::Equal => {}
                        o => return o,
                    }
                }
                a.len().cmp(&b.len())
            }
            (PathElement::Value(a), PathElement::Value(b)) => compare_values(a, b),
            (PathElement::Index(a), PathElement::Index(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for PathElement {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for PathElement {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for PathElement {}

/// `Path.String()` of one element: `.name`, `[k1=v1,k2="v2"]`, `[="v"]`, `[3]`.
impl fmt::Display for PathElement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathElement::Field(n) => write!(f, ".{n}"),
            PathElement::Key(fields) => {
                f.write_str("[")?;
                for (i, (n, v)) in fields.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{n}={}", compact_json(v))?;
                }
                f.write_str("]")
            }
            PathElement::Value(v) => write!(f, "[={}]", compact_json(v)),
            PathElement::Index(i) => write!(f, "[{i}]"),
        }
    }
}

/// A path as kube-apiserver prints it: the elements joined with nothing between them.
pub fn path_string(path: &[PathElement]) -> String {
    path.iter().map(ToString::to_string).collect()
}

/// Compact JSON with the escapes Go's encoder uses for `<`, `>` and `&`.
pub fn compact_json(v: &Value) -> String {
    let s = serde_json::to_string(v).expect("JSON values serialize");
    if s.contains(['<', '>', '&']) {
        s.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
    } else {
        s
    }
}

/// A set of paths, as a trie: `members` end here, `children` go on.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Set {
    members: BTreeSet<PathElement>,
    children: BTreeMap<PathElement, Set>,
}

impl Set {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.children.is_empty()
    }

    /// Adds `path`; the empty path (the root) is not a member of anything and is ignored.
    pub fn insert(&mut self, path: &[PathElement]) {
        match path {
            [] => {}
            [last] => {
                self.members.insert(last.clone());
            }
            [first, rest @ ..] => self.children.entry(first.clone()).or_default().insert(rest),
        }
    }

    /// Adds `pe` as a member of this node.
    pub fn add_member(&mut self, pe: PathElement) {
        self.members.insert(pe);
    }

    /// Adds `child` below `pe`; an empty one adds nothing.
    pub fn add_child(&mut self, pe: PathElement, child: Set) {
        if child.is_empty() {
            return;
        }
        match self.children.get_mut(&pe) {
            Some(mine) => mine.absorb(child),
            None => {
                self.children.insert(pe, child);
            }
        }
    }

    /// `self ∪ other`, in place.
    pub fn absorb(&mut self, other: Set) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.members.extend(other.members);
        for (pe, c) in other.children {
            self.add_child(pe, c);
        }
    }

    /// `self − other` (exact paths), in place.
    pub fn subtract(&mut self, other: &Set) {
        if other.is_empty() {
            return;
        }
        self.members.retain(|m| !other.members.contains(m));
        self.children.retain(|pe, c| {
            if let Some(o) = other.children.get(pe) {
                c.subtract(o);
            }
            !c.is_empty()
        });
    }

    /// [`Self::recursive_difference`], in place.
    pub fn subtract_recursive(&mut self, other: &Set) {
        if other.is_empty() {
            return;
        }
        self.members.retain(|m| !other.members.contains(m));
        self.children.retain(|pe, c| {
            if other.members.contains(pe) {
                return false;
            }
            if let Some(o) = other.children.get(pe) {
                c.subtract_recursive(o);
            }
            !c.is_empty()
        });
    }

    pub fn has(&self, path: &[PathElement]) -> bool {
        match path {
            [] => false,
            [last] => self.members.contains(last),
            [first, rest @ ..] => self.children.get(first).is_some_and(|c| c.has(rest)),
        }
    }

    /// The subset under `pe`.
    pub fn child(&self, pe: &PathElement) -> Option<&Set> {
        self.children.get(pe)
    }

    pub fn union(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.absorb(other.clone());
        out
    }

    pub fn intersection(&self, other: &Set) -> Set {
        let mut out = Set::new();
        out.members = self.members.intersection(&other.members).cloned().collect();
        for (pe, c) in &self.children {
            if let Some(o) = other.children.get(pe) {
                let i = c.intersection(o);
                if !i.is_empty() {
                    out.children.insert(pe.clone(), i);
                }
            }
        }
        out
    }

    /// Paths of `self` that are not in `other` (exact paths: removing `a` keeps `a.b`).
    pub fn difference(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.subtract(other);
        out
    }

    /// Paths of `self` that neither are in `other` nor lie under a member of it.
    pub fn recursive_difference(&self, other: &Set) -> Set {
        let mut out = self.clone();
        out.subtract_recursive(other);
        out
    }

    /// Every path, depth first: at each node its members, then its children, in element order.
    pub fn paths(&self) -> Vec<Vec<PathElement>> {
        let mut out = Vec::new();
        self.collect(&mut Vec::new(), &mut out);
        out
    }

    fn collect(&self, prefix: &mut Vec<PathElement>, out: &mut Vec<Vec<PathElement>>) {
        for m in &self.members {
            let mut p = prefix.clone();
            p.push(m.clone());
            out.push(p);
        }
        for (pe, c) in &self.children {
            prefix.push(pe.clone());
            c.collect(prefix, out);
            prefix.pop();
        }
    }

    /// Adds, as members, the ancestors of each path for which `is_struct_field` holds (given the
    /// ancestor's path): `EnsureNamedFieldsAreMembers`.
    pub fn ensure_named_fields_are_members(
        &self,
        is_struct_field: &dyn Fn(&[PathElement]) -> bool,
    ) -> Set {
        let mut out = self.clone();
        out.add_named_fields(&mut Vec::new(), is_struct_field);
        out
    }

    /// One pass over the trie: a node with children is an ancestor of some path.
    fn add_named_fields(
        &mut self,
        prefix: &mut Vec<PathElement>,
        is_struct_field: &dyn Fn(&[PathElement]) -> bool,
    ) {
        let Set { members, children } = self;
        for (pe, c) in children.iter_mut() {
            prefix.push(pe.clone());
            if !c.is_empty() && matches!(pe, PathElement::Field(_)) && is_struct_field(prefix) {
                members.insert(pe.clone());
            }
            c.add_named_fields(prefix, is_struct_field);
            prefix.pop();
        }
    }

    /// The `FieldsV1` JSON object.
    pub fn to_fields_v1(&self) -> Value {
        Value::Object(self.fields_v1_map(false))
    }

    fn fields_v1_map(&self, dot: bool) -> Map<String, Value> {
        let mut m = Map::new();
        if dot {
            m.insert(".".into(), Value::Object(Map::new()));
        }
        for (pe, c) in &self.children {
            m.insert(
                pe.encode(),
                Value::Object(c.fields_v1_map(self.members.contains(pe))),
            );
        }
        for pe in &self.members {
            if !self.children.contains_key(pe) {
                m.insert(pe.encode(), Value::Object(Map::new()));
            }
        }
        m
    }

    /// Parses a `FieldsV1` object.
    pub fn from_fields_v1(v: &Value) -> Result<Set, String> {
        let Value::Object(m) = v else {
            return Err("fieldsV1 must be a JSON object".into());
        };
        let mut out = Set::new();
        for (k, child) in m {
            if k == "." {
                continue;
            }
            let Some(pe) = PathElement::decode(k)? else {
                continue;
            };
            let Value::Object(cm) = child else {
                return Err(format!("the value of {k:?} must be a JSON object"));
            };
            if cm.is_empty() {
                out.members.insert(pe);
                continue;
            }
            if cm.contains_key(".") {
                out.members.insert(pe.clone());
            }
            let sub = Set::from_fields_v1(child)?;
            if !sub.is_empty() {
                out.children.insert(pe, sub);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn f(n: &str) -> PathElement {
        PathElement::Field(n.into())
    }

    fn port(p: i64) -> PathElement {
        PathElement::Key(vec![
            ("port".into(), json!(p)),
            ("protocol".into(), json!("TCP")),
        ])
    }

    #[test]
    fn fields_v1_round_trip_with_members_and_children() {
        let mut s = Set::new();
        s.insert(&[f("metadata"), f("labels"), f("app")]);
        s.insert(&[f("spec"), f("ports"), port(80)]);
        s.insert(&[f("spec"), f("ports"), port(80), f("targetPort")]);
        s.insert(&[f("spec"), f("selector")]);
        let v = s.to_fields_v1();
        assert_eq!(
            v,
            json!({"f:metadata": {"f:labels": {"f:app": {}}},
                   "f:spec": {"f:ports": {"k:{\"port\":80,\"protocol\":\"TCP\"}": {".": {}, "f:targetPort": {}}},
                              "f:selector": {}}})
        );
        assert_eq!(Set::from_fields_v1(&v).unwrap(), s);
    }

    #[test]
    fn element_order_is_numeric_for_keys_and_fields_before_keys() {
        assert!(port(80) < port(443));
        assert!(f("zzz") < port(1));
        assert!(PathElement::Value(json!(5)) < PathElement::Value(json!("a")));
        assert!(port(1) < PathElement::Value(json!(1)));
    }

    #[test]
    fn difference_is_exact_and_recursive_difference_is_not() {
        let mut a = Set::new();
        a.insert(&[f("spec")]);
        a.insert(&[f("spec"), f("type")]);
        let mut b = Set::new();
        b.insert(&[f("spec")]);
        let d = a.difference(&b);
        assert!(d.has(&[f("spec"), f("type")]) && !d.has(&[f("spec")]));
        assert!(a.recursive_difference(&b).is_empty());
    }

    #[test]
    fn path_text_matches_kube() {
        let p = [f("spec"), f("ports"), port(80), f("targetPort")];
        assert_eq!(
            path_string(&p),
            ".spec.ports[port=80,protocol=\"TCP\"].targetPort"
        );
        let v = [
            f("metadata"),
            f("finalizers"),
            PathElement::Value(json!("example.com/f")),
        ];
        assert_eq!(path_string(&v), ".metadata.finalizers[=\"example.com/f\"]");
    }

    #[test]
    fn unknown_prefixes_are_dropped_and_bad_json_is_an_error() {
        let s = Set::from_fields_v1(&json!({"x:foo": {}, "f:a": {}})).unwrap();
        assert!(s.has(&[f("a")]));
        assert_eq!(s.paths().len(), 1);
        assert!(Set::from_fields_v1(&json!({"k:{bad": {}})).is_err());
        assert!(Set::from_fields_v1(&json!({"f:a": 1})).is_err());
    }
}
