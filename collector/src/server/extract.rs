//! Request extractors whose failures are clear JSON 4xx errors.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;

use super::error::{ApiError, bad};

/// The request body as bytes, within the configured size limit.
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<RawBody, ApiError> {
        match Bytes::from_request(req, state).await {
            Ok(b) => Ok(RawBody(b)),
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::PayloadTooLarge {
                    message: "request body exceeds the configured limit (limits.body_bytes)".into(),
                })
            }
            Err(e) if super::slowbody::is_too_slow(&e) => Err(ApiError::RequestTimeout {
                message: format!("{e}; connection closed"),
            }),
            Err(e) => Err(bad(format!("reading the request body: {}", e.body_text()))),
        }
    }
}

/// A JSON body (`Content-Type: application/json`); an empty body counts as `{}`.
pub struct JsonBody<T>(pub T);

pub fn require_json(headers: &axum::http::HeaderMap) -> Result<(), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim();
    if mime.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType {
            message: format!("expected Content-Type: application/json, got {ct:?}"),
        })
    }
}

/// Parses a JSON body; an error names the field it happened in (`findings[3].process.exe:
/// string of 9000 bytes; at most 4096 allowed`). Strings and lists are capped while parsing
/// (`shadowai_api::bounded`), so an oversized value is refused before it is copied.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    let v = serde_path_to_error::deserialize(&mut *de).map_err(|e| body_error(&e))?;
    de.end().map_err(|e| bad(format!("request body: {e}")))?;
    Ok(v)
}

/// `request body: PATH: ERROR` (no path when the error is at the top level).
pub fn body_error(e: &serde_path_to_error::Error<serde_json::Error>) -> ApiError {
    let path = e.path().to_string();
    if path == "." {
        bad(format!("request body: {}", e.inner()))
    } else {
        bad(format!("request body: {path}: {}", e.inner()))
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<JsonBody<T>, ApiError> {
        let has_ct = req.headers().contains_key(header::CONTENT_TYPE);
        let headers = req.headers().clone();
        let RawBody(bytes) = RawBody::from_request(req, state).await?;
        if bytes.is_empty() && !has_ct {
            return parse_json(b"{}").map(JsonBody);
        }
        require_json(&headers)?;
        parse_json(&bytes).map(JsonBody)
    }
}

/// Query-string parameters; unknown or malformed ones are refused with their name.
pub struct QueryParams<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for QueryParams<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<QueryParams<T>, ApiError> {
        let q = parts.uri.query().unwrap_or("");
        serde_urlencoded::from_str(q)
            .map(QueryParams)
            .map_err(|e| bad(format!("query string: {e}")))
    }
}

/// The client's IP address as text (`unknown` when the connection did not record it).
pub struct Peer(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Peer, ApiError> {
        Ok(Peer(peer_of(&parts.extensions)))
    }
}

/// The client IP recorded by the accept loop.
pub fn peer_of(ext: &axum::http::Extensions) -> String {
    ext.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".to_owned())
}
