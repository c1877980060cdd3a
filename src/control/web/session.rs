//! Logins: password hashing, session cookies, who is asking, and the login
//! rate limit.

use std::collections::HashMap;
use std::sync::Mutex;

use argon2::Argon2;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use super::error::AppError;
use crate::control::db::accounts::{self, User};

pub const COOKIE: &str = "tp_session";

/// argon2id with the crate's defaults (19 MiB, 2 passes: OWASP's minimum).
pub fn hash_password(password: &str) -> Result<String, AppError> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    Argon2::default()
        .verify_password(password.as_bytes(), hash)
        .is_ok()
}

/// A valid argon2id hash of a random password, for checking against when an
/// email has no login (see `account::login`).
pub fn dummy_hash() -> String {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash_password(&crate::control::db::new_token()).unwrap_or_default()
    });
    DUMMY.clone()
}

/// Hashing costs ~50 ms; run it off the async workers.
pub async fn hash_password_blocking(password: String) -> Result<String, AppError> {
    tokio::task::spawn_blocking(move || hash_password(&password))
        .await
        .map_err(|e| AppError::Internal(format!("hash task: {e}")))?
}

pub async fn verify_password_blocking(password: String, hash: String) -> bool {
    tokio::task::spawn_blocking(move || verify_password(&password, &hash))
        .await
        .unwrap_or(false)
}

/// The value of one cookie from the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A Set-Cookie value: HttpOnly, SameSite=Lax, whole site; `Secure` when the
/// instance is served over HTTPS (setting `secure_cookies`).
pub fn cookie_header(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The visitor, logged in or not.
pub struct MaybeUser(pub Option<User>);

/// A logged-in user (operator or staff); others are sent to /login.
pub struct CurrentUser(pub User);

/// A logged-in staff user; operators get 403.
pub struct StaffUser(pub User);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(user) = parts.extensions.get::<User>() {
            return Ok(MaybeUser(Some(user.clone())));
        }
        let Some(token) = cookie_value(&parts.headers, COOKIE) else {
            return Ok(MaybeUser(None));
        };
        let user = accounts::session_user(&state.db, &token).await?;
        if let Some(user) = &user {
            parts.extensions.insert(user.clone());
        }
        Ok(MaybeUser(user))
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match MaybeUser::from_request_parts(parts, state).await? {
            MaybeUser(Some(user)) => Ok(CurrentUser(user)),
            MaybeUser(None) => Err(AppError::LoginRequired),
        }
    }
}

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.is_staff() {
            Ok(StaffUser(user))
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// Failed logins per (email, IP): at most `MAX_FAILURES` within `WINDOW_SECS`.
/// In memory: a restart forgives, which is fine for slowing down guessing.
#[derive(Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, Vec<i64>>>,
}

impl LoginLimiter {
    pub const MAX_FAILURES: usize = 5;
    pub const WINDOW_SECS: i64 = 15 * 60;

    fn key(email: &str, ip: &str) -> String {
        format!("{email}|{ip}")
    }

    /// True when another attempt is allowed now.
    pub fn allowed(&self, email: &str, ip: &str, now: i64) -> bool {
        let Ok(mut map) = self.failures.lock() else {
            return true;
        };
        let entry = map.entry(Self::key(email, ip)).or_default();
        entry.retain(|t| now - t < Self::WINDOW_SECS);
        entry.len() < Self::MAX_FAILURES
    }

    pub fn record_failure(&self, email: &str, ip: &str, now: i64) {
        let Ok(mut map) = self.failures.lock() else {
            return;
        };
        // Keep the map bounded: drop stale keys now and then.
        if map.len() > 100_000 {
            map.retain(|_, v| v.iter().any(|t| now - t < Self::WINDOW_SECS));
        }
        map.entry(Self::key(email, ip)).or_default().push(now);
    }

    pub fn clear(&self, email: &str, ip: &str) {
        if let Ok(mut map) = self.failures.lock() {
            map.remove(&Self::key(email, ip));
        }
    }
}
