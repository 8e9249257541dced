//! The JSON error every route returns.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use shadowai_api::{ErrorBody, ErrorDetail};

use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{message}")]
    BadRequest { message: String },
    #[error("{message}")]
    Unauthenticated { message: String },
    #[error("{message}")]
    Forbidden { message: String },
    #[error("{message}")]
    NotFound { message: String },
    #[error("{message}")]
    MethodNotAllowed { message: String },
    #[error("{message}")]
    Conflict { message: String },
    /// 409 `host_identity_conflict`: the host id is bound to another host key.
    #[error("{message}")]
    HostIdentityConflict { message: String },
    /// 403 `agent_revoked`: an admin revoked this host.
    #[error("{message}")]
    AgentRevoked { message: String },
    #[error("{message}")]
    PayloadTooLarge { message: String },
    /// 408 `request_timeout`: the body arrived below the minimum rate.
    #[error("{message}")]
    RequestTimeout { message: String },
    #[error("{message}")]
    UnsupportedMediaType { message: String },
    /// 503 `busy`: a bounded pool is full; retry after `retry_after_s`.
    #[error("{message}")]
    Busy { message: String, retry_after_s: u64 },
    #[error("too many requests; retry after {retry_after_s} s")]
    RateLimited { retry_after_s: u64 },
    #[error("internal error: {source}")]
    Store { source: StoreError },
    #[error("internal error: {what}")]
    Internal { what: String },
}

pub fn bad(message: impl Into<String>) -> ApiError {
    ApiError::BadRequest {
        message: message.into(),
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        match e {
            StoreError::Conflict { .. } | StoreError::InvalidState { .. } => ApiError::Conflict {
                message: e.to_string(),
            },
            StoreError::NotFound { .. } => ApiError::NotFound {
                message: e.to_string(),
            },
            StoreError::SelfApproval { .. } => ApiError::Forbidden {
                message: e.to_string(),
            },
            // The roll-up's fold is failing past its bound: the agent keeps the batch.
            StoreError::FoldBacklog { .. } | StoreError::FoldBehind { .. } => ApiError::Busy {
                message: e.to_string(),
                retry_after_s: 30,
            },
            other => ApiError::Store { source: other },
        }
    }
}

impl ApiError {
    fn status_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthenticated { .. } => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            ApiError::Forbidden { .. } => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound { .. } => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed { .. } => {
                (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
            }
            ApiError::Conflict { .. } => (StatusCode::CONFLICT, "conflict"),
            ApiError::HostIdentityConflict { .. } => {
                (StatusCode::CONFLICT, "host_identity_conflict")
            }
            ApiError::AgentRevoked { .. } => (StatusCode::FORBIDDEN, "agent_revoked"),
            ApiError::RequestTimeout { .. } => (StatusCode::REQUEST_TIMEOUT, "request_timeout"),
            ApiError::PayloadTooLarge { .. } => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large")
            }
            ApiError::UnsupportedMediaType { .. } => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Busy { .. } => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
            ApiError::Store { .. } | ApiError::Internal { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_code();
        let message = if status.is_server_error() {
            tracing::error!(error = %self, "request failed");
            "internal error (see the collector log)".to_owned()
        } else {
            self.to_string()
        };
        let body = ErrorBody {
            error: ErrorDetail {
                code: code.to_owned(),
                message,
            },
        };
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited { retry_after_s } | ApiError::Busy { retry_after_s, .. } = self
            && let Ok(v) = HeaderValue::from_str(&retry_after_s.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        if status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shadowai\""),
            );
        }
        resp
    }
}
