//! Every handler error becomes a response here, and only here.

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};

use super::i18n::{self, tr};
use crate::control::db::DbError;

#[derive(Debug)]
pub enum AppError {
    /// No such page, or not yours (we do not confirm that it exists).
    NotFound,
    /// Logged in but lacking the role.
    Forbidden,
    /// A member of an account asking for what only its owners may do.
    OwnersOnly,
    /// Refused because of the state of things, with a message (the last
    /// owner leaving, say).
    Conflict(String),
    /// A page that needs a login; sends the browser to the login form.
    LoginRequired,
    /// A page of an account, for a user removed from theirs: sends the
    /// browser to the page that says so.
    NoAccount,
    /// The form's CSRF token did not match the cookie.
    Csrf,
    /// A form body over the route's limit.
    TooLarge,
    /// A request we cannot act on, with a message for the person.
    BadRequest(String),
    /// Too much work queued (password hashing): try again shortly.
    Busy,
    /// The database failed; the cause is logged, the page stays plain.
    Db(DbError),
    /// Anything else unexpected; logged.
    Internal(String),
}

impl From<DbError> for AppError {
    fn from(err: DbError) -> AppError {
        AppError::Db(err)
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            AppError::NotFound => (
                StatusCode::NOT_FOUND,
                tr("Not found"),
                tr("There is no page at this address.").to_string(),
            ),
            AppError::Forbidden => (
                StatusCode::FORBIDDEN,
                tr("Forbidden"),
                tr("This page needs staff rights.").to_string(),
            ),
            AppError::OwnersOnly => (
                StatusCode::FORBIDDEN,
                tr("Forbidden"),
                tr("Only an owner of the account can do this.").to_string(),
            ),
            AppError::Conflict(msg) => (StatusCode::CONFLICT, tr("Not done"), msg),
            AppError::LoginRequired => return Redirect::to(&i18n::url("/login")).into_response(),
            AppError::NoAccount => {
                return Redirect::to(&i18n::url("/manage/no-account")).into_response();
            }
            AppError::Csrf => (
                StatusCode::FORBIDDEN,
                tr("Form expired"),
                tr("The form was too old or came from another site. Go back, reload the page and send it again.")
                    .to_string(),
            ),
            AppError::TooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                tr("Too large"),
                tr("The form was larger than this page accepts. Nothing was changed.").to_string(),
            ),
            AppError::BadRequest(msg) => (StatusCode::BAD_REQUEST, tr("Bad request"), msg),
            AppError::Busy => {
                let mut response = error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    tr("Busy"),
                    tr("Too many logins at this moment. Nothing was changed; try again in a few seconds."),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("2"));
                return response;
            }
            AppError::Db(err) if crate::control::db::is_unavailable(&err) => {
                tracing::warn!(error = %err, "the database is unavailable");
                let mut response = error_page(
                    StatusCode::SERVICE_UNAVAILABLE,
                    tr("Temporarily unavailable"),
                    tr("The database cannot be reached at the moment. Nothing was changed; please try again in a minute."),
                );
                response
                    .headers_mut()
                    .insert(header::RETRY_AFTER, header::HeaderValue::from_static("30"));
                return response;
            }
            AppError::Db(err) => {
                tracing::error!(error = %err, "database error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    tr("Something went wrong"),
                    tr("The database could not complete the request. Nothing was changed; please try again later.")
                        .to_string(),
                )
            }
            AppError::Internal(cause) => {
                tracing::error!(%cause, "internal error");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    tr("Something went wrong"),
                    tr("The request could not be completed. Please try again later.").to_string(),
                )
            }
        };
        error_page(status, title, &message)
    }
}

/// A plain page for errors; it must not depend on anything that can fail.
pub fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    let body = super::templates::render_error(status.as_u16(), title, message);
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}
