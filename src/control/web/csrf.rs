//! CSRF protection: a token bound to the session, and the origin of every
//! form post checked.
//!
//! The token in every form is an HMAC (SHA-256, key shared by all
//! instances through the database) of the session cookie, or, before a
//! login, of a random per-browser cookie (`tp_csrf`). A cross-site page
//! can make the browser send the cookies but cannot read them, and a
//! cookie planted from elsewhere (a sibling domain, plain HTTP) is of no
//! use without the key: a form counts only with the token the server
//! computed. Logging in (and out) changes the session and a new browser
//! cookie is set, so the token rotates. Over HTTPS the cookies are
//! `__Host-` ones (Secure, host-only, path /).
//!
//! On top, a POST whose `Sec-Fetch-Site` says it comes from another site,
//! or whose `Origin` is not this host, is refused before anything runs.

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use ring::hmac;

use super::AppState;
use super::error::AppError;
use super::session::{cookie_header, cookie_value, session_cookie_name};
use crate::control::db::{DbError, hex, new_token, secrets};

/// The per-browser cookie that binds the token before a login.
pub const COOKIE: &str = "tp_csrf";
const SECURE_COOKIE: &str = "__Host-tp_csrf";

/// The name of the browser cookie: `__Host-` over HTTPS.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// The name of the shared HMAC key in the `secrets` table.
const KEY_NAME: &str = "csrf_hmac";

/// The HMAC key, read (or made) once per process.
pub async fn key(state: &AppState) -> Result<Arc<hmac::Key>, DbError> {
    state
        .csrf_key
        .get_or_try_init(|| async {
            let secret = secrets::get_or_create(&state.db, KEY_NAME).await?;
            Ok(Arc::new(hmac::Key::new(
                hmac::HMAC_SHA256,
                secret.as_bytes(),
            )))
        })
        .await
        .cloned()
}

/// The visitor's CSRF token, for forms and for checking them.
#[derive(Clone, Debug)]
pub struct CsrfToken(pub String);

impl CsrfToken {
    /// Checks a submitted form's token (constant time).
    pub fn check(&self, submitted: &str) -> Result<(), AppError> {
        let a = self.0.as_bytes();
        let b = submitted.as_bytes();
        let same =
            a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0;
        if same && !a.is_empty() {
            Ok(())
        } else {
            Err(AppError::Csrf)
        }
    }
}

/// The token for a binding value (a session cookie or a browser cookie).
pub fn token_for(key: &hmac::Key, binding: &str) -> String {
    hex(hmac::sign(key, format!("timepool csrf v1\n{binding}").as_bytes()).as_ref())
}

/// A browser cookie value as we make them: 64 hex characters.
fn well_formed(value: &str) -> bool {
    value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Middleware: computes the request's token (setting the browser cookie
/// when there is none) and refuses cross-site posts.
pub async fn ensure_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    if let Err(error) = check_origin(req.method(), req.headers()) {
        return error.into_response();
    }
    // The API has no forms (and its clients keep no cookies).
    if req.uri().path().starts_with("/api/") {
        return next.run(req).await;
    }
    let secure = state.settings.secure_cookies;
    let key = match key(&state).await {
        Ok(key) => key,
        Err(error) => return AppError::Db(error).into_response(),
    };
    let browser = cookie_value(req.headers(), cookie_name(secure)).filter(|v| well_formed(v));
    let (browser, is_new) = match browser {
        Some(value) => (value, false),
        None => (new_token(), true),
    };
    let binding = cookie_value(req.headers(), session_cookie_name(secure))
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| browser.clone());
    req.extensions_mut()
        .insert(CsrfToken(token_for(&key, &binding)));
    let mut response = next.run(req).await;
    if is_new {
        set_browser_cookie(&mut response, &browser, secure);
    }
    response
}

/// Sets a fresh browser cookie on `response` (a login or logout rotates
/// it along with the session).
pub fn rotate(response: &mut Response, secure: bool) {
    set_browser_cookie(response, &new_token(), secure);
}

fn set_browser_cookie(response: &mut Response, value: &str, secure: bool) {
    let cookie = cookie_header(cookie_name(secure), value, None, secure);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
}

/// A state-changing request must come from this site: `Sec-Fetch-Site`
/// (sent by current browsers) is same-origin or none (typed by the user),
/// else `Origin`, when present, names this host. Clients that send
/// neither (the agents, old browsers) still need the token for forms.
fn check_origin(method: &Method, headers: &HeaderMap) -> Result<(), AppError> {
    if matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS) {
        return Ok(());
    }
    if let Some(site) = headers.get("sec-fetch-site") {
        return match site.as_bytes() {
            b"same-origin" | b"none" => Ok(()),
            _ => Err(AppError::Csrf),
        };
    }
    let Some(origin) = headers.get(header::ORIGIN) else {
        return Ok(());
    };
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    let origin_host = origin
        .to_str()
        .ok()
        .and_then(|o| o.split_once("://"))
        .map(|(_, rest)| rest.trim_end_matches('/'));
    match (origin_host, host) {
        (Some(origin), Some(host)) if origin.eq_ignore_ascii_case(host) => Ok(()),
        _ => Err(AppError::Csrf),
    }
}

impl<S: Send + Sync> FromRequestParts<S> for CsrfToken {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<CsrfToken>()
            .cloned()
            .ok_or_else(|| AppError::Internal("csrf middleware missing".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn posts_from_other_sites_are_refused() {
        let post = Method::POST;
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, HeaderValue::from_static(value));
            }
            map
        };
        assert!(check_origin(&post, &headers(&[])).is_ok());
        assert!(check_origin(&post, &headers(&[("sec-fetch-site", "same-origin")])).is_ok());
        assert!(check_origin(&post, &headers(&[("sec-fetch-site", "cross-site")])).is_err());
        assert!(check_origin(&post, &headers(&[("sec-fetch-site", "same-site")])).is_err());
        let same = [
            ("host", "pool.example:8443"),
            ("origin", "https://pool.example:8443"),
        ];
        assert!(check_origin(&post, &headers(&same)).is_ok());
        let other = [("host", "pool.example"), ("origin", "https://evil.example")];
        assert!(check_origin(&post, &headers(&other)).is_err());
        assert!(check_origin(&post, &headers(&[("host", "a"), ("origin", "null")])).is_err());
        assert!(check_origin(&Method::GET, &headers(&other)).is_ok());
    }

    #[test]
    fn the_token_depends_on_the_binding_and_the_key() {
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"one");
        let other = hmac::Key::new(hmac::HMAC_SHA256, b"two");
        let a = token_for(&key, "session-a");
        assert_eq!(a.len(), 64);
        assert_ne!(a, token_for(&key, "session-b"));
        assert_ne!(a, token_for(&other, "session-a"));
        assert_eq!(a, token_for(&key, "session-a"));
    }
}
