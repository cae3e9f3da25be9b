//! Every failure the API answers with, mapped to a Kubernetes `Status` in one place.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use svcnet_core::field::ErrorList;

pub type Result<T, E = ApiError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{plural} \"{name}\" not found")]
    NotFound {
        group: String,
        plural: String,
        name: String,
    },
    #[error("{plural} \"{name}\" already exists")]
    AlreadyExists {
        group: String,
        plural: String,
        name: String,
    },
    #[error("Operation cannot be fulfilled on {plural} \"{name}\": {detail}")]
    Conflict {
        group: String,
        plural: String,
        name: String,
        detail: String,
    },
    #[error("{kind}{} \"{name}\" is invalid: {}", qualify(group), errors.aggregate_message())]
    Invalid {
        group: String,
        kind: String,
        name: String,
        errors: ErrorList,
    },
    /// A server-side apply that would change fields other managers own.
    #[error("{message}")]
    ApplyConflict { message: String, causes: Vec<Value> },
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Forbidden(String),
    /// A 403 with the `details` kube-apiserver sends (the object, and causes).
    #[error("{message}")]
    Denied { message: String, details: Value },
    #[error("{0}")]
    Gone(String),
    /// 410 for an expired continue token, with a token to read the rest at the newest revision.
    #[error("{message}")]
    Expired {
        message: String,
        continue_token: Option<String>,
    },
    /// 504: a resourceVersion the store has not reached.
    #[error("Timeout: Too large resource version: {requested}, current: {current}")]
    TooLargeResourceVersion { requested: u64, current: u64 },
    #[error("the server does not allow this method on the requested resource")]
    MethodNotAllowed,
    #[error("the server could not find the requested resource")]
    NoRoute,
    #[error("request entity too large: limit is {0}")]
    TooLarge(usize),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("Internal error occurred: {0}")]
    Internal(String),
    /// A 500 without a reason, as kube-apiserver answers errors it does not classify.
    #[error("{0}")]
    Unexpected(String),
    #[error("Timeout: {0}")]
    Timeout(String),
}

impl ApiError {
    pub fn code(&self) -> StatusCode {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => StatusCode::NOT_FOUND,
            ApiError::AlreadyExists { .. }
            | ApiError::Conflict { .. }
            | ApiError::ApplyConflict { .. } => StatusCode::CONFLICT,
            ApiError::Invalid { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Forbidden(_) | ApiError::Denied { .. } => StatusCode::FORBIDDEN,
            ApiError::Gone(_) | ApiError::Expired { .. } => StatusCode::GONE,
            ApiError::TooLargeResourceVersion { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Internal(_) | ApiError::Unexpected(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ApiError::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            ApiError::NotFound { .. } | ApiError::NoRoute => "NotFound",
            ApiError::AlreadyExists { .. } => "AlreadyExists",
            ApiError::Conflict { .. } | ApiError::ApplyConflict { .. } => "Conflict",
            ApiError::Invalid { .. } => "Invalid",
            ApiError::BadRequest(_) => "BadRequest",
            ApiError::Forbidden(_) | ApiError::Denied { .. } => "Forbidden",
            ApiError::Gone(_) | ApiError::Expired { .. } => "Expired",
            ApiError::TooLargeResourceVersion { .. } => "Timeout",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::TooLarge(_) => "RequestEntityTooLarge",
            ApiError::UnsupportedMediaType(_) => "UnsupportedMediaType",
            ApiError::Internal(_) => "InternalError",
            ApiError::Unexpected(_) => "",
            ApiError::Timeout(_) => "Timeout",
        }
    }

    /// The `Status` object kube-apiserver would send.
    pub fn status(&self) -> Value {
        let details = match self {
            ApiError::NotFound {
                group,
                plural,
                name,
            }
            | ApiError::AlreadyExists {
                group,
                plural,
                name,
            }
            | ApiError::Conflict {
                group,
                plural,
                name,
                ..
            } => {
                let mut d = json!({"name": name, "kind": plural});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::Invalid {
                group,
                kind,
                name,
                errors,
            } => {
                let causes: Vec<Value> = errors
                    .0
                    .iter()
                    .map(|e| json!({"reason": e.kind.reason(), "message": e.body(), "field": e.field}))
                    .collect();
                let mut d = json!({"name": name, "kind": kind, "causes": causes});
                if !group.is_empty() {
                    d["group"] = json!(group);
                }
                Some(d)
            }
            ApiError::ApplyConflict { causes, .. } => Some(json!({"causes": causes})),
            ApiError::Denied { details, .. } => Some(details.clone()),
            ApiError::TooLargeResourceVersion { .. } => Some(json!({
                "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
                "retryAfterSeconds": 1,
            })),
            ApiError::Internal(msg) => Some(json!({"causes": [{"message": msg}]})),
            _ => None,
        };
        let metadata = match self {
            ApiError::Expired {
                continue_token: Some(t),
                ..
            } => json!({"continue": t}),
            _ => json!({}),
        };
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": metadata,
            "status": "Failure",
            "message": self.to_string(),
            "reason": self.reason(),
            "code": self.code().as_u16(),
        });
        if let Some(d) = details {
            status["details"] = d;
        }
        if self.reason().is_empty() {
            status.as_object_mut().expect("an object").remove("reason");
        }
        status
    }
}

/// `Kind.group` as kube-apiserver qualifies kinds of named groups.
fn qualify(group: &str) -> String {
    if group.is_empty() {
        String::new()
    } else {
        format!(".{group}")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.status()).unwrap_or_default();
        (
            self.code(),
            [(axum::http::header::CONTENT_TYPE, "application/json")],
            body,
        )
            .into_response()
    }
}

impl From<svcnet_store::Error> for ApiError {
    fn from(e: svcnet_store::Error) -> Self {
        match e {
            svcnet_store::Error::Compacted {
                requested,
                compacted,
            } => ApiError::Gone(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            other => ApiError::Internal(other.to_string()),
        }
    }
}
