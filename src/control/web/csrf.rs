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
//! The token is checked here, in the middleware every page route passes,
//! for every POST (pages take no other method that changes things): the
//! form body is
//! read (bounded by [`form_body_limit`]) and its `csrf` field compared
//! before any handler runs, so a new form handler cannot forget it. The
//! handlers only put the token in the forms they render.
//!
//! On top, a POST whose `Sec-Fetch-Site` says it comes from another site,
//! or whose `Origin` is not this host, is refused before anything runs.

use std::sync::Arc;

use axum::body::Body;
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
    fn check(&self, submitted: &str) -> Result<(), AppError> {
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

/// The largest form body a page route takes: a news item carries its
/// text in every language; every other form is small.
pub fn form_body_limit(path: &str) -> usize {
    if path == "/staff/news" || path.starts_with("/staff/news/") {
        super::news::FORM_LIMIT
    } else {
        super::FORM_BODY_LIMIT
    }
}

/// Middleware: computes the request's token (setting the browser cookie
/// when there is none), refuses cross-site posts, and refuses any
/// state-changing request whose form does not carry the token.
pub async fn ensure_token(State(state): State<AppState>, req: Request, next: Next) -> Response {
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
    let token = CsrfToken(token_for(&key, &binding));
    let mut response = match checked_form(req, &token).await {
        Ok(mut req) => {
            req.extensions_mut().insert(token);
            next.run(req).await
        }
        Err(refused) => refused,
    };
    if is_new {
        set_browser_cookie(&mut response, &browser, secure);
    }
    response
}

/// A GET, HEAD or OPTIONS request as it came; a POST with its form read
/// (within the path's limit) and its `csrf` field checked, then given back
/// with the same bytes for the handler to parse. Pages are read or sent as
/// forms: any other method is refused here, so no route can take one
/// without the token.
async fn checked_form(req: Request, token: &CsrfToken) -> Result<Request, Response> {
    if is_safe(req.method()) {
        return Ok(req);
    }
    if req.method() != Method::POST {
        return Err(super::method_not_allowed().await);
    }
    let limit = form_body_limit(req.uri().path());
    let (parts, body) = req.into_parts();
    let bytes = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| AppError::TooLarge.into_response())?;
    let submitted = form_urlencoded::parse(&bytes)
        .find(|(name, _)| name == "csrf")
        .map(|(_, value)| value);
    token
        .check(submitted.as_deref().unwrap_or(""))
        .map_err(IntoResponse::into_response)?;
    Ok(Request::from_parts(parts, Body::from(bytes)))
}

/// Methods that change nothing, so need no token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
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
    if is_safe(method) {
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
