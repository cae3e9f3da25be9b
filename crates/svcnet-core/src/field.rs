//! Field errors shaped like apimachinery's `field.Error`, the currency of validation.
//!
//! An [`ErrorList`] renders to exactly the strings kube-apiserver puts into a 422 `Status`:
//! `spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive`.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorType {
    NotFound,
    Required,
    Duplicate,
    Invalid,
    NotSupported,
    Forbidden,
    TooLong,
    TooMany,
    Internal,
}

impl ErrorType {
    /// The `details.causes[].reason` string.
    pub fn reason(self) -> &'static str {
        match self {
            ErrorType::NotFound => "FieldValueNotFound",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Duplicate => "FieldValueDuplicate",
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::NotSupported => "FieldValueNotSupported",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::TooMany => "FieldValueTooMany",
            ErrorType::Internal => "InternalError",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ErrorType::NotFound => "Not found",
            ErrorType::Required => "Required value",
            ErrorType::Duplicate => "Duplicate value",
            ErrorType::Invalid => "Invalid value",
            ErrorType::NotSupported => "Unsupported value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::TooMany => "Too many",
            ErrorType::Internal => "Internal error",
        }
    }
}

/// A field error's bad value, printed as apimachinery's `ErrorBody` prints it: Go strings
/// with `%q`, numbers and booleans bare, nil pointers as `"null"`, anything else with `%#v`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    Omitted,
    /// A Go `string` (or a named string type, which `%#v` prints the same way).
    Str(String),
    Int(i64),
    Bool(bool),
    /// A nil pointer (or nil interface): printed `"null"`.
    Null,
    /// Already rendered in Go syntax (slices, structs).
    Raw(String),
}

impl From<&str> for BadValue {
    fn from(s: &str) -> Self {
        BadValue::Str(s.to_owned())
    }
}
impl From<&String> for BadValue {
    fn from(s: &String) -> Self {
        BadValue::Str(s.clone())
    }
}
impl From<String> for BadValue {
    fn from(s: String) -> Self {
        BadValue::Str(s)
    }
}
impl From<i32> for BadValue {
    fn from(v: i32) -> Self {
        BadValue::Int(v.into())
    }
}
impl From<i64> for BadValue {
    fn from(v: i64) -> Self {
        BadValue::Int(v)
    }
}
impl From<bool> for BadValue {
    fn from(v: bool) -> Self {
        BadValue::Bool(v)
    }
}
/// A Go pointer: nil prints as `"null"`, anything else as the value it points to.
impl<T: Into<BadValue>> From<Option<T>> for BadValue {
    fn from(v: Option<T>) -> Self {
        v.map_or(BadValue::Null, Into::into)
    }
}

impl BadValue {
    /// A `[]string` rendered as Go's `%#v` does: `[]string{"a", "b"}`.
    pub fn list<S: AsRef<str>>(items: &[S]) -> Self {
        Self::slice("string", Some(items))
    }

    /// A slice of a string type, as `%#v` prints it: `[]core.IPFamily{"IPv4"}`, or
    /// `[]string(nil)` when the slice is nil.
    pub fn slice<S: AsRef<str>>(elem_type: &str, items: Option<&[S]>) -> Self {
        match items {
            None => BadValue::Raw(format!("[]{elem_type}(nil)")),
            Some(items) => {
                let inner: Vec<String> = items.iter().map(|s| go_quote(s.as_ref())).collect();
                BadValue::Raw(format!("[]{elem_type}{{{}}}", inner.join(", ")))
            }
        }
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Omitted => Ok(()),
            BadValue::Str(s) => f.write_str(&go_quote(s)),
            BadValue::Int(i) => write!(f, "{i}"),
            BadValue::Bool(b) => write!(f, "{b}"),
            BadValue::Null => f.write_str("\"null\""),
            BadValue::Raw(r) => f.write_str(r),
        }
    }
}

/// Go's `strconv.Quote`: double quotes, `\"` and `\\`, C escapes for the usual control
/// characters, `\xNN` for other bytes below 0x80 that are not printable, `\uNNNN` and
/// `\UNNNNNNNN` for non-printable code points; printable Unicode stays as it is.
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{b}' => out.push_str("\\v"),
            c if go_is_print(c) => out.push(c),
            c if (c as u32) < 0x80 => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if (c as u32) < 0x10000 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push_str(&format!("\\U{:08x}", c as u32)),
        }
    }
    out.push('"');
    out
}

/// An approximation of Go's `unicode.IsPrint`: graphic characters and the ASCII space; not
/// control, format (zero-width, bidi) or non-ASCII space characters.
fn go_is_print(c: char) -> bool {
    if c == ' ' {
        return true;
    }
    if c.is_control() || c.is_whitespace() {
        return false;
    }
    !matches!(c,
        '\u{ad}' | '\u{600}'..='\u{605}' | '\u{61c}' | '\u{6dd}' | '\u{70f}' | '\u{180e}'
        | '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}'
        | '\u{e000}'..='\u{f8ff}' | '\u{f0000}'..
    )
}

/// One invalid field.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    pub kind: ErrorType,
    pub field: String,
    pub value: BadValue,
    pub detail: String,
}

impl FieldError {
    pub fn new(
        kind: ErrorType,
        field: impl Into<String>,
        value: BadValue,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            kind,
            field: field.into(),
            value,
            detail: detail.into(),
        }
    }
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Required, field, BadValue::Omitted, detail)
    }
    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(ErrorType::Forbidden, field, BadValue::Omitted, detail)
    }
    pub fn invalid(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(ErrorType::Invalid, field, value.into(), detail)
    }
    pub fn duplicate(field: impl Into<String>, value: impl Into<BadValue>) -> Self {
        Self::new(ErrorType::Duplicate, field, value.into(), "")
    }
    pub fn not_supported(
        field: impl Into<String>,
        value: impl Into<BadValue>,
        supported: &[&str],
    ) -> Self {
        let list: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        Self::new(
            ErrorType::NotSupported,
            field,
            value.into(),
            format!("supported values: {}", list.join(", ")),
        )
    }
    pub fn too_long(field: impl Into<String>, max: usize) -> Self {
        Self::new(
            ErrorType::TooLong,
            field,
            BadValue::Omitted,
            format!("must have at most {max} bytes"),
        )
    }

    /// The message without the field path (apimachinery's `ErrorBody`).
    pub fn body(&self) -> String {
        let mut s = match (self.kind, &self.value) {
            (
                ErrorType::Required
                | ErrorType::Forbidden
                | ErrorType::TooLong
                | ErrorType::Internal,
                _,
            )
            | (_, BadValue::Omitted) => self.kind.label().to_owned(),
            (_, v) => format!("{}: {v}", self.kind.label()),
        };
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Errors from one validation pass, in the order found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorList(pub Vec<FieldError>);

impl ErrorList {
    pub fn push(&mut self, e: FieldError) {
        self.0.push(e);
    }
    pub fn extend(&mut self, other: ErrorList) {
        self.0.extend(other.0);
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The aggregate message (`ErrorList.ToAggregate().Error()`): identical errors once, one
    /// error bare, several in brackets. The causes of a `Status` keep the duplicates.
    pub fn aggregate_message(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for e in &self.0 {
            let msg = e.to_string();
            if !parts.contains(&msg) {
                parts.push(msg);
            }
        }
        match parts.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        }
    }
}

impl From<FieldError> for ErrorList {
    fn from(e: FieldError) -> Self {
        ErrorList(vec![e])
    }
}

impl fmt::Display for ErrorList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.aggregate_message())
    }
}

impl std::error::Error for ErrorList {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_like_apimachinery() {
        let e = FieldError::invalid(
            "spec.ports[0].port",
            0,
            "must be between 1 and 65535, inclusive",
        );
        assert_eq!(
            e.to_string(),
            "spec.ports[0].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        );
        assert_eq!(
            FieldError::required("spec.ports", "").to_string(),
            "spec.ports: Required value"
        );
        let ns = FieldError::not_supported("spec.type", "Foo", &["ClusterIP", "NodePort"]);
        assert_eq!(
            ns.body(),
            r#"Unsupported value: "Foo": supported values: "ClusterIP", "NodePort""#
        );
        assert_eq!(
            FieldError::duplicate("spec.ports[1].name", "http").to_string(),
            r#"spec.ports[1].name: Duplicate value: "http""#
        );
        assert_eq!(
            BadValue::list(&["1.2.3.4"]).to_string(),
            r#"[]string{"1.2.3.4"}"#
        );
    }

    #[test]
    fn values_print_like_go() {
        assert_eq!(
            BadValue::list(&["a", "b"]).to_string(),
            r#"[]string{"a", "b"}"#
        );
        assert_eq!(BadValue::list::<&str>(&[]).to_string(), "[]string{}");
        assert_eq!(
            BadValue::slice::<String>("string", None).to_string(),
            "[]string(nil)"
        );
        assert_eq!(
            BadValue::slice("core.IPFamily", Some(&["IPv6"][..])).to_string(),
            r#"[]core.IPFamily{"IPv6"}"#
        );
        assert_eq!(BadValue::from(None::<&str>).to_string(), r#""null""#);
        assert_eq!(BadValue::from(Some(10)).to_string(), "10");
        assert_eq!(BadValue::from(true).to_string(), "true");
        assert_eq!(go_quote("a\u{1}b"), r#""a\x01b""#);
        assert_eq!(go_quote("tab\there"), r#""tab\there""#);
        assert_eq!(go_quote("\"q\" \\"), r#""\"q\" \\""#);
        assert_eq!(go_quote("é\u{a0}\u{200b}"), r#""é\u00a0\u200b""#);
        let internal = FieldError::new(ErrorType::Internal, "spec", BadValue::Null, "boom");
        assert_eq!(internal.to_string(), "spec: Internal error: boom");
        assert_eq!(internal.kind.reason(), "InternalError");
    }

    #[test]
    fn aggregate_drops_repeated_messages() {
        let e = FieldError::invalid("metadata.labels", "-x", "bad");
        let other = FieldError::required("spec.ports", "");
        let twice = ErrorList(vec![e.clone(), e.clone()]);
        assert_eq!(
            twice.aggregate_message(),
            r#"metadata.labels: Invalid value: "-x": bad"#
        );
        let three = ErrorList(vec![e.clone(), other, e]);
        assert_eq!(
            three.aggregate_message(),
            r#"[metadata.labels: Invalid value: "-x": bad, spec.ports: Required value]"#
        );
        assert_eq!(three.0.len(), 3, "causes keep duplicates");
    }
}
