//! Label and field selectors in the query-string syntax (`app=web,tier!=db,env in (a,b)`).

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LabelSelector(pub Vec<Requirement>);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(pub String);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn check_key(k: &str) -> Result<String, SelectorError> {
    let k = k.trim();
    if k.is_empty() || !crate::names::qualified_name(k).is_empty() {
        return Err(SelectorError(format!("invalid label key {k:?}")));
    }
    Ok(k.to_owned())
}

fn parse_set(rest: &str) -> Result<Vec<String>, SelectorError> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| SelectorError(format!("expected a parenthesised set, found {rest:?}")))?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
        .collect())
}

impl LabelSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(reqs));
        }
        for part in split_top_level(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(SelectorError("empty requirement".into()));
            }
            let req = if let Some((k, v)) = p.split_once("!=") {
                Requirement::NotEquals(check_key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once("==") {
                Requirement::Equals(check_key(k)?, v.trim().to_owned())
            } else if let Some((k, v)) = p.split_once('=') {
                Requirement::Equals(check_key(k)?, v.trim().to_owned())
            } else if let Some(idx) = p.find(" notin ") {
                Requirement::NotIn(check_key(&p[..idx])?, parse_set(&p[idx + 7..])?)
            } else if let Some(idx) = p.find(" in ") {
                Requirement::In(check_key(&p[..idx])?, parse_set(&p[idx + 4..])?)
            } else if let Some(k) = p.strip_prefix('!') {
                Requirement::DoesNotExist(check_key(k)?)
            } else {
                Requirement::Exists(check_key(p)?)
            };
            reqs.push(req);
        }
        Ok(Self(reqs))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, labels: Option<&BTreeMap<String, String>>) -> bool {
        let get = |k: &str| labels.and_then(|l| l.get(k)).map(String::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::DoesNotExist(k) => get(k).is_none(),
        })
    }
}

/// One `field=value` / `field!=value` term of a field selector.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldRequirement {
    pub field: String,
    pub value: String,
    pub negate: bool,
}

/// A parsed field selector. Which fields are allowed depends on the resource.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FieldSelector(pub Vec<FieldRequirement>);

impl FieldSelector {
    pub fn parse(s: &str) -> Result<Self, SelectorError> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Self(reqs));
        }
        for part in s.split(',') {
            let p = part.trim();
            let (field, value, negate) = if let Some((f, v)) = p.split_once("!=") {
                (f, v, true)
            } else if let Some((f, v)) = p.split_once("==") {
                (f, v, false)
            } else if let Some((f, v)) = p.split_once('=') {
                (f, v, false)
            } else {
                return Err(SelectorError(format!("invalid field selector: {p:?}")));
            };
            reqs.push(FieldRequirement {
                field: field.trim().to_owned(),
                value: value.trim().to_owned(),
                negate,
            });
        }
        Ok(Self(reqs))
    }

    /// Whether an object whose field values are given by `lookup` matches. `lookup` returns
    /// `None` for an unsupported field, which the caller rejects before matching.
    pub fn matches(&self, lookup: impl Fn(&str) -> Option<String>) -> bool {
        self.0.iter().all(|r| {
            let v = lookup(&r.field).unwrap_or_default();
            (v == r.value) != r.negate
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parses_and_matches() {
        let s = LabelSelector::parse("app=web, tier!=db,env in (a, b),!legacy,team").unwrap();
        assert_eq!(s.0.len(), 5);
        assert!(s.matches(Some(&labels(&[
            ("app", "web"),
            ("env", "a"),
            ("team", "x")
        ]))));
        assert!(!s.matches(Some(&labels(&[
            ("app", "web"),
            ("env", "c"),
            ("team", "x")
        ]))));
        assert!(!s.matches(Some(&labels(&[
            ("app", "web"),
            ("env", "a"),
            ("team", "x"),
            ("legacy", "")
        ]))));
        let n = LabelSelector::parse("env notin (prod)").unwrap();
        assert!(n.matches(None));
        assert!(LabelSelector::parse("a=b,,c").is_err());
        assert!(LabelSelector::parse("bad key=1").is_err());
    }

    #[test]
    fn field_selectors() {
        let f = FieldSelector::parse("metadata.name=x,spec.nodeName!=n1").unwrap();
        assert!(f.matches(|k| Some(if k == "metadata.name" {
            "x".into()
        } else {
            "n2".into()
        })));
        assert!(!f.matches(|k| Some(if k == "metadata.name" {
            "x".into()
        } else {
            "n1".into()
        })));
        assert!(FieldSelector::parse("nonsense").is_err());
    }
}
