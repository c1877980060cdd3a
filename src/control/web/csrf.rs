//! CSRF protection: a double-submit token.
//!
//! Every visitor gets a random `tp_csrf` cookie (HttpOnly, SameSite=Lax); every
//! form carries the same value in a hidden `csrf` field. A cross-site page can
//! make the browser send the cookie but cannot read it to fill the field.

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use super::AppState;
use super::error::AppError;
use super::session::cookie_value;

pub const COOKIE: &str = "tp_csrf";

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

/// Middleware: makes sure the request has a token, and sets the cookie when new.
pub async fn ensure_token(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let existing = cookie_value(req.headers(), COOKIE).filter(|v| v.len() == 64);
    let (token, is_new) = match existing {
        Some(token) => (token, false),
        None => (crate::control::db::new_token(), true),
    };
    req.extensions_mut().insert(CsrfToken(token.clone()));
    let secure = state.settings.secure_cookies;
    let mut response = next.run(req).await;
    if is_new {
        let cookie = super::session::cookie_header(COOKIE, &token, None, secure);
        if let Ok(value) = HeaderValue::from_str(&cookie) {
            response.headers_mut().append(header::SET_COOKIE, value);
        }
    }
    response
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
