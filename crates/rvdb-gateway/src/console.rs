//! The web console at `/console`: a single page of hand-written HTML, CSS and JavaScript (no framework, no build
//! step, nothing fetched from elsewhere), built into the binary and served by the gateway's own listener.
//!
//! The page holds no data: it calls the same REST API (`/v1`), MCP endpoint (`/mcp`, for backups and restores
//! with progress notifications) and `/metrics` as any client, from the same origin, so the API's key and
//! Origin rules apply to everything it shows or changes. The assets themselves are public (like
//! `/openapi.json`): a browser must load the page to be asked for a key. The key is typed once and kept in the
//! tab's `sessionStorage` only. A strict Content-Security-Policy (scripts, styles and connections from this
//! origin only, no inline script) keeps an injected string in a point's metadata from running.
//!
//! `RVDB_CONSOLE_DIR` serves the files from a directory instead, read on each request (for working on them
//! without rebuilding).

use axum::Router;
use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

/// The assets: name, content type, embedded bytes.
const ASSETS: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../console/index.html")),
    ("console.js", "text/javascript; charset=utf-8", include_str!("../console/console.js")),
    ("console.css", "text/css; charset=utf-8", include_str!("../console/console.css")),
];

/// Scripts, styles, images and connections from this origin only; no inline script or style, no plugins, no
/// framing by other sites, forms post only here.
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Routes of the console (the caller adds the Host check).
pub fn router() -> Router {
    Router::new()
        .route("/console", get(|| async { asset("index.html") }))
        .route("/console/", get(|| async { Redirect::permanent("/console") }))
        .route("/console/{file}", get(|Path(file): Path<String>| async move { asset(&file) }))
}

fn asset(name: &str) -> Response {
    let Some((name, content_type, embedded)) = ASSETS.iter().find(|(n, _, _)| *n == name) else {
        let body = axum::Json(serde_json::json!({"error": {"code": "not_found", "message": "no such console file"}}));
        return (StatusCode::NOT_FOUND, body).into_response();
    };
    let body = match std::env::var_os("RVDB_CONSOLE_DIR") {
        Some(dir) => match std::fs::read_to_string(std::path::Path::new(&dir).join(name)) {
            Ok(text) => text,
            Err(e) => {
                tracing::warn!(file = %name, error = %e, "RVDB_CONSOLE_DIR: cannot read the file; serving the built-in one");
                (*embedded).to_string()
            }
        },
        None => (*embedded).to_string(),
    };
    let mut response = body.into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    // Always revalidate: a new binary serves new files at the same names.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_are_served_with_their_type_and_a_strict_policy() {
        let r = asset("console.js");
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(r.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap_or("").contains("script-src 'self'"));
        assert_eq!(asset("../Cargo.toml").status(), StatusCode::NOT_FOUND);
        assert_eq!(asset("secrets").status(), StatusCode::NOT_FOUND);
    }
}
