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
        }
    }
}

/// A value as Go's `%#v` would print it in an error: strings quoted, numbers bare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BadValue {
    Omitted,
    Str(String),
    Int(i64),
    /// Already rendered (lists, structs).
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

impl BadValue {
    /// A list of strings rendered as `["a", "b"]`.
    pub fn list<S: AsRef<str>>(items: &[S]) -> Self {
        let inner: Vec<String> = items.iter().map(|s| format!("{:?}", s.as_ref())).collect();
        BadValue::Raw(format!("[{}]", inner.join(", ")))
    }
}

impl fmt::Display for BadValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadValue::Omitted => Ok(()),
            BadValue::Str(s) => write!(f, "{s:?}"),
            BadValue::Int(i) => write!(f, "{i}"),
            BadValue::Raw(r) => f.write_str(r),
        }
    }
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
            (ErrorType::Required | ErrorType::Forbidden | ErrorType::TooLong, _)
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
    /// The aggregate message: one error bare, several in brackets (`utilerrors.NewAggregate`).
    pub fn aggregate_message(&self) -> String {
        match self.0.as_slice() {
            [one] => one.to_string(),
            many => {
                let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
                format!("[{}]", parts.join(", "))
            }
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
        assert_eq!(BadValue::list(&["1.2.3.4"]).to_string(), r#"["1.2.3.4"]"#);
    }
}
