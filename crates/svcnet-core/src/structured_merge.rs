//! Server-side apply: field ownership (`managedFields`) and the structured merge of an applied
//! configuration into a live object, after kubernetes-sigs/structured-merge-diff and
//! kube-apiserver's field manager. Pure: objects are JSON values, the time is an argument.
//!
//! - [`field_set`], [`compare`], [`merge`] and [`remove_items`] are the value algorithms,
//!   driven by the list and map types of [`crate::schema`].
//! - [`Managers`] is a decoded `metadata.managedFields`; [`update`] records a non-apply write
//!   (operation `Update`), [`apply`] performs an apply (operation `Apply`) with conflict
//!   detection, `force`, removal of fields a manager stopped applying, and kubectl's
//!   client-side-apply migration rules.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Map, Value, json};

use crate::fieldpath::{PathElement, Set, path_string};
use crate::schema::{KeyDefault, ListType, ObjectType, list_type, object_type};

pub type Result<T, E = String> = std::result::Result<T, E>;

/// How one node of a value merges.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Node {
    Scalar,
    /// An atomic list, map or struct: a leaf.
    Atomic,
    Granular(ObjectType),
    Associative(ListType),
}

fn node(kind: &str, path: &[&str], v: &Value) -> Node {
    match v {
        Value::Object(_) => match object_type(kind, path) {
            ObjectType::Atomic => Node::Atomic,
            t => Node::Granular(t),
        },
        Value::Array(_) => match list_type(kind, path) {
            ListType::Atomic => Node::Atomic,
            t => Node::Associative(t),
        },
        _ => Node::Scalar,
    }
}

/// `metadata.managedFields` is never compared or owned.
fn is_managed_fields(names: &[&str]) -> bool {
    names == ["metadata", "managedFields"]
}

/// Field names as a path, for error messages.
fn names_path(names: &[&str]) -> Vec<PathElement> {
    names
        .iter()
        .map(|n| PathElement::Field((*n).to_owned()))
        .collect()
}

fn empty_or_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// The path element of one item of an associative list.
fn item_element(list: ListType, item: &Value, at: &[PathElement]) -> Result<PathElement> {
    match list {
        ListType::Map { .. } if !item.is_object() => Err(format!(
            "{}: associative list with keys may not have non-map elements",
            path_string(at)
        )),
        ListType::Map { keys, .. } => {
            let mut fields = Vec::new();
            for k in keys {
                match item.get(k.name) {
                    Some(v) if !v.is_null() => fields.push((k.name.to_owned(), v.clone())),
                    _ => {
                        if let KeyDefault::Str(d) = k.default {
                            fields.push((k.name.to_owned(), json!(d)));
                        }
                    }
                }
            }
            if fields.is_empty() {
                return Err(format!(
                    "{}: associative list with keys has an element that omits all key fields {:?}",
                    path_string(at),
                    keys.iter().map(|k| k.name).collect::<Vec<_>>()
                ));
            }
            fields.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(PathElement::Key(fields))
        }
        ListType::Set => Ok(PathElement::Value(item.clone())),
        ListType::Atomic => unreachable!("atomic lists have no item elements"),
    }
}

/// One item of an associative list: its element, the item, and whether another item has the
/// same element.
struct Item<'v> {
    pe: PathElement,
    value: &'v Value,
    dup: bool,
}

fn items<'v>(list: ListType, arr: &'v [Value], at: &[PathElement]) -> Result<Vec<Item<'v>>> {
    let mut out = Vec::with_capacity(arr.len());
    for value in arr {
        let pe = item_element(list, value, at)?;
        out.push(Item {
            pe,
            value,
            dup: false,
        });
    }
    // Indexed, not scanned pairwise: a list in a request can have tens of thousands of items.
    let mut first: BTreeMap<&PathElement, usize> = BTreeMap::new();
    let mut dups = Vec::new();
    for (i, it) in out.iter().enumerate() {
        if let Some(&f) = first.get(&it.pe) {
            dups.push(f);
            dups.push(i);
        } else {
            first.insert(&it.pe, i);
        }
    }
    for i in dups {
        out[i].dup = true;
    }
    Ok(out)
}

/// Walks values keeping the field names (for schema lookups) and the path (for sets).
struct Walk<'k> {
    kind: &'k str,
    names: Vec<String>,
    path: Vec<PathElement>,
}

impl<'k> Walk<'k> {
    fn new(kind: &'k str) -> Self {
        Self {
            kind,
            names: Vec::new(),
            path: Vec::new(),
        }
    }

    fn node(&self, v: &Value) -> Node {
        let names: Vec<&str> = self.names.iter().map(String::as_str).collect();
        node(self.kind, &names, v)
    }

    fn enter_field(&mut self, k: &str) {
        self.names.push(k.to_owned());
        self.path.push(PathElement::Field(k.to_owned()));
    }

    fn leave_field(&mut self) {
        self.names.pop();
        self.path.pop();
    }
}

// === field sets ===

/// The set of fields a value sets (`ToFieldSet`), as an applier comes to own them.
pub fn field_set(kind: &str, v: &Value) -> Result<Set> {
    Ok(fs(kind, &mut Vec::new(), v)?.1)
}

/// Whether the node `v` is itself a member, and the set below it (relative to it). Built
/// bottom-up, so each path element is cloned once.
fn fs<'v>(kind: &str, names: &mut Vec<&'v str>, v: &'v Value) -> Result<(bool, Set)> {
    let mut out = Set::new();
    match node(kind, names, v) {
        Node::Scalar | Node::Atomic => return Ok((true, out)),
        Node::Granular(t) => {
            for (k, val) in v.as_object().expect("an object") {
                names.push(k);
                if !is_managed_fields(names) {
                    let (member, below) = fs(kind, names, val)?;
                    let pe = PathElement::Field(k.clone());
                    if member || empty_or_null(val) && !val.is_array() || t == ObjectType::Map {
                        out.add_member(pe.clone());
                    }
                    out.add_child(pe, below);
                }
                names.pop();
            }
        }
        Node::Associative(list) => {
            let arr = v.as_array().expect("an array");
            for item in items(list, arr, &names_path(names))? {
                let below = if !item.dup && matches!(list, ListType::Map { .. }) {
                    fs(kind, names, item.value)?.1
                } else {
                    Set::new()
                };
                out.add_member(item.pe.clone());
                out.add_child(item.pe, below);
            }
        }
    }
    Ok((false, out))
}

// === compare ===

/// What differs between two values, as three disjoint sets: `modified` holds only leaves;
/// `added` and `removed` hold every node that appeared or disappeared.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Comparison {
    pub added: Set,
    pub modified: Set,
    pub removed: Set,
}

impl Comparison {
    /// Drops everything at or under `reset`.
    fn without(mut self, reset: &Set) -> Self {
        self.added.subtract_recursive(reset);
        self.modified.subtract_recursive(reset);
        self.removed.subtract_recursive(reset);
        self
    }

    fn changed(&self) -> Set {
        let mut c = self.added.clone();
        c.absorb(self.modified.clone());
        c
    }
}

pub fn compare(kind: &str, lhs: &Value, rhs: &Value) -> Result<Comparison> {
    Ok(walk(kind, &mut Vec::new(), Some(lhs), Some(rhs))?.1)
}

/// How one node changed.
#[derive(Default)]
struct Change {
    added: bool,
    removed: bool,
    modified: bool,
}

impl Comparison {
    /// Records the change of the child `pe` and what changed below it.
    fn add(&mut self, pe: PathElement, change: Change, below: Comparison) {
        for (set, flag, child) in [
            (&mut self.added, change.added, below.added),
            (&mut self.removed, change.removed, below.removed),
            (&mut self.modified, change.modified, below.modified),
        ] {
            if flag {
                set.add_member(pe.clone());
            }
            if !child.is_empty() {
                set.add_child(pe.clone(), child);
            }
        }
    }
}

/// How the node changed and what changed below it (relative to it), built bottom-up.
fn walk<'v>(
    kind: &str,
    names: &mut Vec<&'v str>,
    l: Option<&'v Value>,
    r: Option<&'v Value>,
) -> Result<(Change, Comparison)> {
    let mut out = Comparison::default();
    if is_managed_fields(names) {
        return Ok((Change::default(), out));
    }
    // Equal subtrees have nothing to report; most of an update's object is unchanged.
    if let (Some(a), Some(b)) = (l, r)
        && a == b
    {
        return Ok((Change::default(), out));
    }
    let probe = r.or(l).expect("one side is present");
    let kind_of = node(kind, names, probe);
    let leaf = match (l, r) {
        (Some(a), Some(b)) => {
            std::mem::discriminant(a) != std::mem::discriminant(b)
                || matches!(kind_of, Node::Scalar | Node::Atomic)
                || (empty_or_null(a) && empty_or_null(b))
        }
        _ => matches!(kind_of, Node::Scalar | Node::Atomic),
    };
    if leaf {
        let change = Change {
            added: l.is_none(),
            removed: r.is_none(),
            modified: matches!((l, r), (Some(a), Some(b)) if a != b),
        };
        return Ok((change, out));
    }
    match kind_of {
        Node::Granular(_) => {
            static EMPTY: std::sync::LazyLock<Map<String, Value>> =
                std::sync::LazyLock::new(Map::new);
            let lm = l.and_then(Value::as_object).unwrap_or(&EMPTY);
            let rm = r.and_then(Value::as_object).unwrap_or(&EMPTY);
            // Both maps iterate in key order: merge them.
            let mut li = lm.iter().peekable();
            let mut ri = rm.iter().peekable();
            loop {
                let (k, lv, rv) = match (li.peek(), ri.peek()) {
                    (None, None) => break,
                    (Some((lk, _)), Some((rk, _))) if lk == rk => {
                        let (k, lv) = li.next().expect("peeked");
                        let (_, rv) = ri.next().expect("peeked");
                        (k, Some(lv), Some(rv))
                    }
                    (Some((lk, _)), Some((rk, _))) if lk < rk => {
                        let (k, lv) = li.next().expect("peeked");
                        (k, Some(lv), None)
                    }
                    (Some(_), None) => {
                        let (k, lv) = li.next().expect("peeked");
                        (k, Some(lv), None)
                    }
                    _ => {
                        let (k, rv) = ri.next().expect("peeked");
                        (k, None, Some(rv))
                    }
                };
                names.push(k);
                let (change, below) = walk(kind, names, lv, rv)?;
                names.pop();
                out.add(PathElement::Field(k.clone()), change, below);
            }
        }
        Node::Associative(list) => {
            let la = l.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let ra = r.and_then(Value::as_array).map_or(&[][..], Vec::as_slice);
            let at = names_path(names);
            let li = items(list, la, &at)?;
            let ri = items(list, ra, &at)?;
            // Each element once: the left's in order, then the right's new ones, with the
            // items of each side that have it.
            type Group<'a, 'v> = (&'a PathElement, Vec<&'a Item<'v>>, Vec<&'a Item<'v>>);
            let mut groups: Vec<Group> = Vec::new();
            let mut index: BTreeMap<&PathElement, usize> = BTreeMap::new();
            for (side, list) in [(0, &li), (1, &ri)] {
                for it in list.iter() {
                    let g = *index.entry(&it.pe).or_insert_with(|| {
                        groups.push((&it.pe, Vec::new(), Vec::new()));
                        groups.len() - 1
                    });
                    if side == 0 {
                        groups[g].1.push(it);
                    } else {
                        groups[g].2.push(it);
                    }
                }
            }
            for (pe, lv, rv) in groups {
                if lv.len() > 1 || rv.len() > 1 {
                    let same =
                        lv.len() == rv.len() && lv.iter().zip(&rv).all(|(a, b)| a.value == b.value);
                    let change = Change {
                        added: lv.is_empty(),
                        removed: rv.is_empty(),
                        modified: !lv.is_empty() && !rv.is_empty() && !same,
                    };
                    out.add(pe.clone(), change, Comparison::default());
                } else {
                    let (change, below) = walk(
                        kind,
                        names,
                        lv.first().map(|i| i.value),
                        rv.first().map(|i| i.value),
                    )?;
                    out.add(pe.clone(), change, below);
                }
            }
        }
        Node::Scalar | Node::Atomic => unreachable!("leaves returned above"),
    }
    let change = Change {
        added: l.is_none(),
        removed: r.is_none(),
        modified: false,
    };
    Ok((change, out))
}

// === merge ===

/// `live.Merge(config)`: the configuration's values over the live object, granular maps and
/// associative lists merged item by item, atomic values replaced.
pub fn merge(kind: &str, live: &Value, config: &Value) -> Result<Value> {
    mg(&mut Walk::new(kind), Some(live), config)
}

fn mg(w: &mut Walk, live: Option<&Value>, cfg: &Value) -> Result<Value> {
    let kind = w.node(cfg);
    if cfg.is_null() {
        // A null granular container keeps the live content; anything else is unset.
        return Ok(match live {
            Some(l) if matches!(w.node(l), Node::Granular(_) | Node::Associative(_)) => l.clone(),
            _ => Value::Null,
        });
    }
    if matches!(kind, Node::Scalar | Node::Atomic)
        || live.is_some_and(|l| empty_or_null(l) && empty_or_null(cfg))
    {
        return Ok(cfg.clone());
    }
    match kind {
        Node::Granular(_) => {
            let mut out = match live {
                Some(Value::Object(l)) => l.clone(),
                _ => Map::new(),
            };
            for (k, cv) in cfg.as_object().expect("an object") {
                w.enter_field(k);
                let merged = mg(w, out.get(k), cv)?;
                w.leave_field();
                if merged.is_null() {
                    out.remove(k);
                } else {
                    out.insert(k.clone(), merged);
                }
            }
            Ok(Value::Object(out))
        }
        Node::Associative(list) => {
            let ca = cfg.as_array().expect("an array");
            let la = match live {
                Some(Value::Array(l)) => l.as_slice(),
                _ => &[],
            };
            merge_list(w, list, la, ca)
        }
        Node::Scalar | Node::Atomic => unreachable!("returned above"),
    }
}

/// Merges associative lists keeping structured-merge-diff's item order (`visitListItems`).
fn merge_list(w: &mut Walk, list: ListType, la: &[Value], ca: &[Value]) -> Result<Value> {
    let li = items(list, la, &w.path)?;
    let ri = items(list, ca, &w.path)?;
    if let Some(d) = ri.iter().find(|i| i.dup) {
        return Err(format!(
            "{}: duplicate entries for key {}",
            path_string(&w.path),
            d.pe
        ));
    }
    let l_ids: Vec<String> = li.iter().map(|i| i.pe.encode()).collect();
    let r_ids: Vec<String> = ri.iter().map(|i| i.pe.encode()).collect();
    let in_r: HashSet<&str> = r_ids.iter().map(String::as_str).collect();
    // The first live item of each element.
    let mut live: HashMap<&str, &Value> = HashMap::with_capacity(li.len());
    for (id, it) in l_ids.iter().zip(&li) {
        live.entry(id.as_str()).or_insert(it.value);
    }
    let live_of = |id: &str| live.get(id).copied();
    let mut shared: std::collections::VecDeque<&str> = r_ids
        .iter()
        .filter(|id| live.contains_key(id.as_str()))
        .map(String::as_str)
        .collect();
    let mut next = shared.pop_front();
    let mut done: HashSet<&str> = HashSet::new();
    let mut out = Vec::with_capacity(la.len() + ca.len());
    let (mut i, mut j) = (0, 0);
    let merge_item = |w: &mut Walk, id: &str, pe: &PathElement, c: &Value| -> Result<Value> {
        w.path.push(pe.clone());
        let merged = mg(w, live_of(id), c);
        w.path.pop();
        merged
    };
    while i < li.len() || j < ri.len() {
        if i < li.len() && j < ri.len() {
            if l_ids[i] == r_ids[j] {
                out.push(merge_item(w, &r_ids[j], &ri[j].pe, ri[j].value)?);
                done.insert(l_ids[i].as_str());
                i += 1;
                j += 1;
                next = shared.pop_front();
                continue;
            }
            if in_r.contains(l_ids[i].as_str()) && next.is_some_and(|n| n != l_ids[i]) {
                i += 1;
                continue;
            }
        }
        if i < li.len() {
            if !in_r.contains(l_ids[i].as_str()) {
                out.push(li[i].value.clone());
                i += 1;
                continue;
            } else if done.contains(l_ids[i].as_str()) {
                i += 1;
            }
        }
        if j < ri.len() {
            out.push(merge_item(w, &r_ids[j], &ri[j].pe, ri[j].value)?);
            done.insert(r_ids[j].as_str());
            if next == Some(r_ids[j].as_str()) {
                next = shared.pop_front();
            }
            j += 1;
        }
    }
    Ok(Value::Array(out))
}

// === removal ===

/// Drops every map key and list item whose exact path is in `set`, with its subtree
/// (`RemoveItems`). Containers left empty by a removal go too. Atomic values are not entered.
pub fn remove_items(kind: &str, v: &Value, set: &Set) -> Result<Value> {
    let mut out = v.clone();
    rm(&mut Walk::new(kind), &mut out, set)?;
    Ok(out)
}

fn rm(w: &mut Walk, v: &mut Value, set: &Set) -> Result<()> {
    match w.node(v) {
        Node::Granular(_) => {
            let m = v.as_object_mut().expect("an object");
            let keys: Vec<String> = m.keys().cloned().collect();
            for k in keys {
                let pe = PathElement::Field(k.clone());
                if set.has(std::slice::from_ref(&pe)) {
                    m.remove(&k);
                    continue;
                }
                if let Some(sub) = set.child(&pe) {
                    w.enter_field(&k);
                    let child = m.get_mut(&k).expect("present");
                    let was_empty = empty_or_null(child);
                    rm(w, child, sub)?;
                    w.leave_field();
                    if !was_empty && empty_or_null(child) {
                        m.remove(&k);
                    }
                }
            }
        }
        Node::Associative(list) => {
            let arr = std::mem::take(v.as_array_mut().expect("an array"));
            let mut kept = Vec::with_capacity(arr.len());
            for mut item in arr {
                let pe = item_element(list, &item, &w.path)?;
                if set.has(std::slice::from_ref(&pe)) {
                    continue;
                }
                if let Some(sub) = set.child(&pe) {
                    w.path.push(pe);
                    rm(w, &mut item, sub)?;
                    w.path.pop();
                }
                kept.push(item);
            }
            *v = Value::Array(kept);
        }
        Node::Scalar | Node::Atomic => {}
    }
    Ok(())
}

/// `EnsureNamedFieldsAreMembers`: struct-field ancestors become members.
fn with_named_fields(kind: &str, set: &Set) -> Set {
    set.ensure_named_fields_are_members(&|ancestor: &[PathElement]| {
        let parent: Vec<&str> = ancestor[..ancestor.len() - 1]
            .iter()
            .filter_map(|pe| match pe {
                PathElement::Field(n) => Some(n.as_str()),
                _ => None,
            })
            .collect();
        // A list item's fields belong to the item's struct; map keys are not struct fields.
        object_type(kind, &parent) == ObjectType::Struct
    })
}

// === managers ===

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// Who owns a set: an applier has one entry per subresource, an updater one per API version
/// and subresource.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ManagerId {
    pub manager: String,
    pub operation: Operation,
    /// Empty for appliers.
    pub api_version: String,
    pub subresource: String,
}

impl ManagerId {
    /// The identifier string kube-apiserver keys managers by (and sorts conflicts by).
    pub fn identifier(&self) -> String {
        let mut s = format!(
            "{{\"manager\":{},\"operation\":{}",
            crate::fieldpath::compact_json(&json!(self.manager)),
            crate::fieldpath::compact_json(&json!(self.operation.as_str()))
        );
        if !self.api_version.is_empty() {
            s.push_str(&format!(
                ",\"apiVersion\":{}",
                crate::fieldpath::compact_json(&json!(self.api_version))
            ));
        }
        if !self.subresource.is_empty() {
            s.push_str(&format!(
                ",\"subresource\":{}",
                crate::fieldpath::compact_json(&json!(self.subresource))
            ));
        }
        s.push('}');
        s
    }

    /// How a conflict names the manager: `"kubectl"`, `"kubelet" with subresource "status"
    /// using v1`.
    pub fn describe(&self) -> String {
        let mut s = format!("{:?}", self.manager);
        if !self.subresource.is_empty() {
            s.push_str(&format!(" with subresource {:?}", self.subresource));
        }
        if self.operation == Operation::Update {
            s.push_str(&format!(" using {}", self.api_version));
        }
        s
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub set: Set,
    pub api_version: String,
    pub time: Option<String>,
}

/// A decoded `metadata.managedFields`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Managers(pub BTreeMap<ManagerId, Entry>);

impl Managers {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Decodes a `managedFields` list; `Err` when an entry is invalid (unknown operation, no
    /// apiVersion, a `fieldsType` other than `FieldsV1`, unparsable fields).
    pub fn decode(v: &Value) -> Result<Self> {
        let Value::Array(list) = v else {
            return Err("managedFields must be a list".into());
        };
        let mut out = BTreeMap::new();
        for e in list {
            let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
            let operation = match s("operation") {
                "Apply" => Operation::Apply,
                "Update" => Operation::Update,
                other => return Err(format!("operation must be Apply or Update, not {other:?}")),
            };
            if s("apiVersion").is_empty() {
                return Err("apiVersion must not be empty".into());
            }
            if s("fieldsType") != "FieldsV1" {
                return Err(format!(
                    "fieldsType must be FieldsV1, not {:?}",
                    s("fieldsType")
                ));
            }
            let set = Set::from_fields_v1(e.get("fieldsV1").unwrap_or(&json!({})))?;
            let manager = match s("manager") {
                "" => "unknown".to_owned(),
                m => m.to_owned(),
            };
            let id = ManagerId {
                manager,
                operation,
                api_version: match operation {
                    Operation::Apply => String::new(),
                    Operation::Update => s("apiVersion").to_owned(),
                },
                subresource: s("subresource").to_owned(),
            };
            out.insert(
                id,
                Entry {
                    set,
                    api_version: s("apiVersion").to_owned(),
                    time: e.get("time").and_then(Value::as_str).map(str::to_owned),
                },
            );
        }
        Ok(Self(out))
    }

    /// The `managedFields` list, ordered as kube-apiserver orders it: appliers first, then
    /// oldest first, then by manager, API version and subresource.
    pub fn encode(&self) -> Value {
        let mut entries: Vec<(&ManagerId, &Entry)> = self.0.iter().collect();
        entries.sort_by(|(a, ea), (b, eb)| {
            a.operation
                .as_str()
                .cmp(b.operation.as_str())
                .then_with(|| seconds(ea.time.as_deref()).cmp(&seconds(eb.time.as_deref())))
                .then_with(|| a.manager.cmp(&b.manager))
                .then_with(|| ea.api_version.cmp(&eb.api_version))
                .then_with(|| a.subresource.cmp(&b.subresource))
        });
        Value::Array(
            entries
                .into_iter()
                .map(|(id, e)| {
                    let mut m = Map::new();
                    m.insert("manager".into(), json!(id.manager));
                    m.insert("operation".into(), json!(id.operation.as_str()));
                    m.insert("apiVersion".into(), json!(e.api_version));
                    if let Some(t) = &e.time {
                        m.insert("time".into(), json!(t));
                    }
                    m.insert("fieldsType".into(), json!("FieldsV1"));
                    m.insert("fieldsV1".into(), e.set.to_fields_v1());
                    if !id.subresource.is_empty() {
                        m.insert("subresource".into(), json!(id.subresource));
                    }
                    Value::Object(m)
                })
                .collect(),
        )
    }

    fn drop_empty(&mut self) {
        self.0.retain(|_, e| !e.set.is_empty());
    }
}

fn seconds(t: Option<&str>) -> i64 {
    t.and_then(|t| t.parse::<jiff::Timestamp>().ok())
        .map_or(0, |t| t.as_second())
}

/// Paths no manager owns (`stripmeta`): identity and server-set metadata.
fn strip_set() -> &'static Set {
    static STRIP: std::sync::LazyLock<Set> = std::sync::LazyLock::new(build_strip_set);
    &STRIP
}

fn build_strip_set() -> Set {
    let mut s = Set::new();
    let f = |n: &str| PathElement::Field(n.to_owned());
    s.insert(&[f("apiVersion")]);
    s.insert(&[f("kind")]);
    s.insert(&[f("metadata")]);
    for m in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        s.insert(&[f("metadata"), f(m)]);
    }
    s
}

/// Dotted field paths (`status`, `metadata.deletionTimestamp`) as a set.
pub fn paths_set(paths: &[&str]) -> Set {
    let mut s = Set::new();
    for p in paths {
        let pes: Vec<PathElement> = p
            .split('.')
            .map(|n| PathElement::Field(n.to_owned()))
            .collect();
        s.insert(&pes);
    }
    s
}

/// Who writes, through which endpoint, and when.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    pub kind: &'a str,
    pub manager: &'a str,
    pub api_version: &'a str,
    pub subresource: &'a str,
    /// Fields this endpoint never changes (the strategy's reset fields).
    pub reset: &'a [&'a str],
    /// RFC 3339, seconds.
    pub now: &'a str,
}

impl Request<'_> {
    fn updater(&self, manager: &str) -> ManagerId {
        ManagerId {
            manager: if manager.is_empty() {
                "unknown".into()
            } else {
                manager.to_owned()
            },
            operation: Operation::Update,
            api_version: self.api_version.to_owned(),
            subresource: self.subresource.to_owned(),
        }
    }

    fn applier(&self) -> ManagerId {
        ManagerId {
            manager: self.manager.to_owned(),
            operation: Operation::Apply,
            api_version: String::new(),
            subresource: self.subresource.to_owned(),
        }
    }
}

/// The object an object is compared with when it has no previous version: as Go's zero
/// value renders, with the top-level structs present, so a creator owns `f:spec.f:type` but
/// not `f:spec` itself.
fn empty_object() -> Value {
    json!({"metadata": {}, "spec": {}, "status": {}})
}

/// Records a non-apply write of `new` over `live` (`None` on create) by `req.manager`:
/// whoever changes a value comes to own it and other managers lose it. An existing object
/// without managers stays untracked.
pub fn update(
    live: Option<&Value>,
    new: &Value,
    managers: Managers,
    req: &Request,
) -> Result<Managers> {
    update_as(live, new, managers, req, req.manager)
}

fn update_as(
    live: Option<&Value>,
    new: &Value,
    mut managers: Managers,
    req: &Request,
    manager: &str,
) -> Result<Managers> {
    if managers.is_empty() && live.is_some() {
        return Ok(managers);
    }
    let reset = paths_set(req.reset);
    let base = empty_object();
    let cmp = compare(req.kind, live.unwrap_or(&base), new)?.without(&reset);
    let mut changed = cmp.added;
    changed.absorb(cmp.modified);
    for e in managers.0.values_mut() {
        e.set.subtract(&changed);
        e.set.subtract(&cmp.removed);
    }
    managers.drop_empty();
    let mut op = changed;
    op.subtract(strip_set());
    if !op.is_empty() {
        let id = req.updater(manager);
        let entry = managers.0.entry(id).or_insert_with(|| Entry {
            set: Set::new(),
            api_version: req.api_version.to_owned(),
            time: None,
        });
        entry.set = entry.set.union(&op);
        entry.time = Some(req.now.to_owned());
    }
    cap_updaters(&mut managers);
    Ok(managers)
}

/// At most this many `Update` entries; older ones fold into `ancient-changes`.
const MAX_UPDATE_MANAGERS: usize = 10;

fn cap_updaters(managers: &mut Managers) {
    let mut updaters: Vec<(ManagerId, i64)> = managers
        .0
        .iter()
        .filter(|(id, _)| id.operation == Operation::Update)
        .map(|(id, e)| (id.clone(), seconds(e.time.as_deref())))
        .collect();
    if updaters.len() <= MAX_UPDATE_MANAGERS {
        return;
    }
    updaters.sort_by(|a, b| {
        a.1.cmp(&b.1)
            .then_with(|| a.0.identifier().cmp(&b.0.identifier()))
    });
    let mut count = updaters.len();
    let mut first: BTreeMap<String, ManagerId> = BTreeMap::new();
    for (id, _) in updaters {
        if count <= MAX_UPDATE_MANAGERS {
            break;
        }
        let version = id.api_version.clone();
        let bucket = ManagerId {
            manager: "ancient-changes".into(),
            operation: Operation::Update,
            api_version: version.clone(),
            subresource: String::new(),
        };
        let Some(keep) = first.get(&version).cloned() else {
            first.insert(version, id);
            continue;
        };
        if id == bucket {
            continue;
        }
        if !managers.0.contains_key(&bucket)
            && let Some(e) = managers.0.remove(&keep)
        {
            managers.0.insert(bucket.clone(), e);
        }
        if let Some(e) = managers.0.remove(&id)
            && let Some(b) = managers.0.get_mut(&bucket)
        {
            b.set = b.set.union(&e.set);
            b.time = e.time;
            count -= 1;
        }
    }
}

/// One field another manager owns that an apply would change.
#[derive(Clone, Debug, PartialEq)]
pub struct Conflict {
    pub manager: ManagerId,
    pub path: Vec<PathElement>,
}

#[derive(Debug, PartialEq)]
pub enum ApplyError {
    /// The apply would change fields other managers own (HTTP 409).
    Conflicts(Vec<Conflict>),
    /// The configuration cannot be merged (duplicate keys, items without keys).
    Invalid(String),
}

impl From<String> for ApplyError {
    fn from(s: String) -> Self {
        ApplyError::Invalid(s)
    }
}

/// kube-apiserver's message for a failed apply: one line for one conflict, a block per
/// manager otherwise.
pub fn conflicts_message(conflicts: &[Conflict]) -> String {
    if let [c] = conflicts {
        return format!(
            "Apply failed with 1 conflict: conflict with {}: {}",
            c.manager.describe(),
            path_string(&c.path)
        );
    }
    let mut blocks: Vec<String> = Vec::new();
    let mut current: Option<&ManagerId> = None;
    for c in conflicts {
        if current != Some(&c.manager) {
            blocks.push(format!("conflicts with {}:", c.manager.describe()));
            current = Some(&c.manager);
        }
        let last = blocks.last_mut().expect("pushed above");
        last.push_str(&format!("\n- {}", path_string(&c.path)));
    }
    format!(
        "Apply failed with {} conflicts: {}",
        conflicts.len(),
        blocks.join("\n")
    )
}

pub const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// The manager name kubectl's server-side apply uses, for which the client-side-apply
/// migration rules hold.
const KUBECTL: &str = "kubectl";

/// The result of an apply: the merged object (to be defaulted, admitted and stored) and its
/// new managers.
#[derive(Debug)]
pub struct Applied {
    pub object: Value,
    pub managers: Managers,
}

/// Applies `config` by `req.manager` to `live` (`None`: the object is created).
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    managers: Managers,
    req: &Request,
    force: bool,
) -> Result<Applied, ApplyError> {
    match apply_once(live, config, managers.clone(), req, force) {
        Err(ApplyError::Conflicts(conflicts)) if req.manager == KUBECTL && !force => {
            // LastAppliedManager: conflicts on fields client-side apply last set to their current
            // value are the user's own; take them over.
            // An annotation that does not type-check is ignored, as kube-apiserver does.
            let allowed = live.and_then(|l| allowed_by_last_applied(req, l).ok().flatten());
            let Some(allowed) = allowed else {
                return Err(ApplyError::Conflicts(conflicts));
            };
            let left: Vec<Conflict> = conflicts
                .into_iter()
                .filter(|c| !allowed.has(&c.path))
                .collect();
            if left.is_empty() {
                apply_once(live, config, managers, req, true)
            } else {
                Err(ApplyError::Conflicts(left))
            }
        }
        other => other,
    }
    .map(|mut applied| {
        if req.manager == KUBECTL {
            update_last_applied(&mut applied.object, config);
        }
        applied
    })
}

/// The fields of the last client-side-applied configuration whose values are still live.
fn allowed_by_last_applied(req: &Request, live: &Value) -> Result<Option<Set>> {
    let Some(text) = live["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    let Ok(last) = serde_json::from_str::<Value>(text) else {
        return Ok(None);
    };
    if last["apiVersion"].as_str() != Some(req.api_version) {
        return Ok(None);
    }
    let cmp = compare(req.kind, &last, live)?;
    Ok(Some(
        field_set(req.kind, &last)?
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    ))
}

/// LastAppliedUpdater: an object that carries client-side apply's annotation gets the applied
/// configuration in it, so a later client-side apply diffs against what was applied.
fn update_last_applied(obj: &mut Value, config: &Value) {
    if obj["metadata"]["annotations"][LAST_APPLIED]
        .as_str()
        .is_none_or(str::is_empty)
    {
        return;
    }
    let mut cfg = config.clone();
    if let Some(a) = cfg["metadata"]
        .get_mut("annotations")
        .and_then(Value::as_object_mut)
    {
        a.remove(LAST_APPLIED);
    }
    // As Go's encoder writes it (`<`, `>`, `&` escaped), with kubectl's trailing newline.
    let mut text = crate::fieldpath::compact_json(&cfg);
    text.push('\n');
    let annotations = &mut obj["metadata"]["annotations"];
    annotations[LAST_APPLIED] = json!(text);
    // SetLastApplied: an annotation that would take the annotations over their size limit is
    // dropped instead of failing the apply.
    let size: usize = annotations.as_object().map_or(0, |m| {
        m.iter()
            .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
            .sum()
    });
    if size > crate::meta::TOTAL_ANNOTATION_SIZE
        && let Some(m) = annotations.as_object_mut()
    {
        m.remove(LAST_APPLIED);
    }
}

fn apply_once(
    live: Option<&Value>,
    config: &Value,
    mut managers: Managers,
    req: &Request,
    force: bool,
) -> Result<Applied, ApplyError> {
    let reset = paths_set(req.reset);
    let base = empty_object();
    let live_v = live.unwrap_or(&base);
    // A new object is merged into nothing (kinds without spec or status get none); ownership
    // is still computed against the zero value.
    let nothing = json!({});
    if managers.is_empty()
        && let Some(l) = live
    {
        // SkipNonApplied: an untracked object's fields belong to "before-first-apply".
        managers = update_as(None, l, Managers::default(), req, "before-first-apply")?;
    }
    let merged = merge(req.kind, live.unwrap_or(&nothing), config)?;
    let me = req.applier();
    let last = managers
        .0
        .get(&me)
        .map(|e| e.set.clone())
        .unwrap_or_default();
    let mine = field_set(req.kind, config)?.recursive_difference(&reset);
    let previous_time = managers.0.get(&me).and_then(|e| e.time.clone());
    managers.0.insert(
        me.clone(),
        Entry {
            set: mine,
            api_version: req.api_version.to_owned(),
            time: previous_time,
        },
    );
    // Fields this manager stopped applying go unless someone else still owns them.
    let owned = managers
        .0
        .values()
        .fold(Set::new(), |acc, e| acc.union(&e.set));
    let strip = strip_set();
    let gone = with_named_fields(req.kind, &last)
        .intersection(&with_named_fields(req.kind, &field_set(req.kind, &merged)?))
        .difference(&with_named_fields(req.kind, &owned))
        .difference(strip);
    let merged = if gone.is_empty() {
        merged
    } else {
        remove_items(req.kind, &merged, &gone)?
    };
    let cmp = compare(req.kind, live_v, &merged)?.without(&reset);
    let changed = cmp.changed();
    let mut conflicts = Vec::new();
    let mut others: Vec<(&ManagerId, &Entry)> =
        managers.0.iter().filter(|(id, _)| **id != me).collect();
    others.sort_by_key(|(id, _)| id.identifier());
    for (id, e) in others {
        for path in e.set.intersection(&changed).paths() {
            conflicts.push(Conflict {
                manager: id.clone(),
                path,
            });
        }
    }
    if !conflicts.is_empty() && !force {
        return Err(ApplyError::Conflicts(conflicts));
    }
    for (id, e) in managers.0.iter_mut() {
        if *id != me {
            e.set = e.set.difference(&changed).difference(&cmp.removed);
        }
    }
    let object_changed =
        !cmp.added.is_empty() || !cmp.modified.is_empty() || !cmp.removed.is_empty();
    if let Some(e) = managers.0.get_mut(&me) {
        e.set = e.set.difference(strip);
        // A new applier gets a time even when its apply changed nothing (kube leaves it out,
        // kubernetes#127938).
        if object_changed || e.time.is_none() {
            e.time = Some(req.now.to_owned());
        }
    }
    managers.drop_empty();
    Ok(Applied {
        object: merged,
        managers,
    })
}

/// What a write may say about `metadata.managedFields` (`decodeLiveOrNew`).
#[derive(Debug, PartialEq)]
pub enum Requested {
    /// Absent, null or invalid: keep the stored managers.
    Keep,
    /// `[]` (or one empty entry): start from none.
    Reset,
    /// A valid list: it replaces the stored managers.
    Replace(Managers),
}

pub fn requested(v: Option<&Value>) -> Requested {
    match v {
        None | Some(Value::Null) => Requested::Keep,
        Some(Value::Array(a)) if a.is_empty() => Requested::Reset,
        Some(Value::Array(a)) if a.len() == 1 && a[0].as_object().is_some_and(Map::is_empty) => {
            Requested::Reset
        }
        Some(v) => match Managers::decode(v) {
            Ok(m) => Requested::Replace(m),
            Err(_) => Requested::Keep,
        },
    }
}

#[cfg(test)]
mod tests;
