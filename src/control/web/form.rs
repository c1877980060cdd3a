//! Form helpers: per-field error messages and shared field rules, and the
//! row id of a URL.

use super::error::AppError;
use super::i18n::{tr, trf};
use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;
use std::collections::BTreeMap;

/// The id of a row in the URL (`/manage/servers/{id}`). Anything but a
/// positive integer is the not-found page, not axum's plain-text
/// "Invalid URL: Cannot parse" (and says no more than a missing row).
pub struct RowId(pub i64);

impl<S: Send + Sync> FromRequestParts<S> for RowId {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<RowId, AppError> {
        let Path(text) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|_| AppError::NotFound)?;
        text.parse::<i64>()
            .ok()
            .filter(|id| *id > 0)
            .map(RowId)
            .ok_or(AppError::NotFound)
    }
}

/// Messages keyed by field name; templates show each next to its field.
#[derive(Default, Debug, serde::Serialize)]
pub struct FieldErrors(pub BTreeMap<&'static str, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| message.into());
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// A monitor's or a DNS node's name: 1 to 64 of letters, digits, '.',
/// '-' and '_'.
pub fn is_short_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b".-_".contains(&b))
}

/// What a name that fails [`is_short_name`] is told.
pub const SHORT_NAME_RULE: &str = "Use 1 to 64 letters, digits, '-', '_' or '.'.";

pub const MIN_PASSWORD_LEN: usize = 10;
pub const MAX_PASSWORD_LEN: usize = 1024;
/// The longest email address (RFC 5321's path limit less the brackets).
pub const MAX_EMAIL_LEN: usize = 254;

/// Normalises an email (trim, lower case) and checks its shape; not that it exists.
pub fn check_email(raw: &str) -> Result<String, String> {
    if raw.len() > MAX_EMAIL_LEN + 64 {
        // Checked before any work: not even lower-cased.
        return Err(tr("This does not look like an email address.").into());
    }
    let email = raw.trim().to_ascii_lowercase();
    if email.is_empty() {
        return Err(tr("Enter your email address.").into());
    }
    let valid = email.len() <= MAX_EMAIL_LEN
        && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && match email.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !domain.contains('@')
            }
            None => false,
        };
    if valid {
        Ok(email)
    } else {
        Err(tr("This does not look like an email address.").into())
    }
}

pub fn check_new_password(password: &str, repeat: &str, errors: &mut FieldErrors) {
    if password.chars().count() < MIN_PASSWORD_LEN {
        errors.add(
            "password",
            trf(
                "Use at least {count} characters.",
                &[("count", MIN_PASSWORD_LEN.to_string())],
            ),
        );
    } else if password.len() > MAX_PASSWORD_LEN {
        errors.add(
            "password",
            trf(
                "Use at most {count} bytes.",
                &[("count", MAX_PASSWORD_LEN.to_string())],
            ),
        );
    } else if password != repeat {
        errors.add("password2", tr("The two passwords differ."));
    }
}
