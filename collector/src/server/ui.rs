//! The web UI: files under `collector/ui/`, embedded at compile time by build.rs.

use axum::extract::Path;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};

use super::error::ApiError;

include!(concat!(env!("OUT_DIR"), "/ui_files.rs"));

const FALLBACK: &str = "<!doctype html><meta charset=utf-8><title>shadowai</title><p>The shadowai web UI was not built into this collector (collector/ui/ was empty). The API is at /api/v1/.";

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next().unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn serve(path: &str) -> Option<Response> {
    let (_, bytes) = UI_FILES.iter().find(|(p, _)| *p == path)?;
    let mut resp = (*bytes).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    Some(resp)
}

pub async fn index() -> Response {
    serve("index.html").unwrap_or_else(|| {
        (
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            FALLBACK,
        )
            .into_response()
    })
}

pub async fn file(Path(path): Path<String>) -> Result<Response, ApiError> {
    serve(&path).ok_or_else(|| ApiError::NotFound {
        message: format!("no UI file {path:?}"),
    })
}
