//! Password reset by mail: `/reset` asks for the address and queues a
//! mail with a one-time link (`db::mail`: only the token's hash is
//! stored; an hour; one mail per login in five minutes); `/reset/{token}`
//! sets the new password, closes the user's other links and ends every
//! session of theirs.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::account::actor;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::{FieldErrors, MAX_EMAIL_LEN, check_new_password};
use super::i18n::{tr, trf};
use super::mails;
use super::notice::{self, Notice};
use super::session::{self, MaybeUser};
use super::{AppState, html};
use crate::control::db::{accounts, audit, mail};

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct RequestForm {
    pub email: String,
}

pub async fn request_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let ctx =
        ctx! { form => RequestForm::default(), errors => FieldErrors::default(), sent => false };
    html(
        StatusCode::OK,
        "reset_request.html",
        state.page(&user, &csrf, ctx),
    )
}

/// The same answer whether the address has a login or not (it does not
/// tell who has one).
pub async fn request(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Form(form): Form<RequestForm>,
) -> Result<Response, AppError> {
    let email = form.email.trim().to_ascii_lowercase();
    if email.is_empty() || email.len() > MAX_EMAIL_LEN || !email.contains('@') {
        let mut errors = FieldErrors::default();
        errors.add("email", tr("This does not look like an email address."));
        let ctx = ctx! { form, errors, sent => false };
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reset_request.html",
            state.page(&user, &csrf, ctx),
        );
    }
    if let Some(found) = accounts::find_by_email(&state.db, &email).await? {
        let mut tx = state.db.begin().await?;
        if let Some(token) = mail::create_reset(&mut tx, found.id).await? {
            let link = mails::absolute(&state, &format!("/reset/{token}"));
            let site = state.settings.origin.clone();
            let subject = trf("{site}: choose a new password", &[("site", site.clone())]);
            let body = mails::body(
                &state,
                &[
                    trf(
                        "Someone, maybe you, asked to reset the password of the login {email} on {site}.",
                        &[("email", found.email.clone()), ("site", site)],
                    ),
                    format!(
                        "{}\n{link}",
                        tr(
                            "To choose a new password, open this link within an hour. It works once:"
                        )
                    ),
                    tr("If you did not ask, ignore this mail: your password stays as it is.")
                        .to_string(),
                ],
            );
            mail::enqueue(&mut tx, &found.email, "password_reset", &subject, &body).await?;
            audit::record(
                &mut tx,
                &actor(&found),
                "password.reset.request",
                &format!("user:{}", found.id),
                "",
            )
            .await?;
            tx.commit().await?;
        }
    }
    let ctx =
        ctx! { form => RequestForm { email }, errors => FieldErrors::default(), sent => true };
    html(
        StatusCode::OK,
        "reset_request.html",
        state.page(&user, &csrf, ctx),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    pub password: String,
    pub password2: String,
}

pub async fn password_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    mail::reset_user(&state.db, &token)
        .await?
        .ok_or(AppError::NotFound)?;
    let ctx = ctx! { token, errors => FieldErrors::default() };
    html(
        StatusCode::OK,
        "reset_password.html",
        state.page(&user, &csrf, ctx),
    )
}

pub async fn set_password(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Path(token): Path<String>,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    mail::reset_user(&state.db, &token)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut errors = FieldErrors::default();
    check_new_password(&form.password, &form.password2, &mut errors);
    if !errors.is_empty() {
        let ctx = ctx! { token, errors };
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "reset_password.html",
            state.page(&user, &csrf, ctx),
        );
    }
    let hash = session::hash_password_bounded(&state, form.password.clone()).await?;
    let mut tx = state.db.begin().await?;
    let user_id = mail::use_reset(&mut tx, &token, &hash)
        .await?
        .ok_or(AppError::NotFound)?;
    audit::record(
        &mut tx,
        &audit::Actor {
            user_id: Some(user_id),
            name: format!("user:{user_id}"),
        },
        "password.reset",
        &format!("user:{user_id}"),
        "every session ended",
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect("/login", Notice::PasswordChanged))
}
