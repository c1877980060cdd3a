//! `/manage/login`: the user's own login: a new password (the current one
//! first; every other session ends) and a new address (the current
//! password first; it changes when the link mailed to the new address is
//! opened, `account::verify`).

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::account::actor;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::{FieldErrors, MAX_PASSWORD_LEN, check_email, check_new_password};
use super::i18n::{tr, trf};
use super::mails;
use super::notice::{self, Notice};
use super::session::{self, CurrentUser};
use super::{AppState, html};
use crate::control::db::accounts::{self, User};
use crate::control::db::{audit, mail};

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PasswordForm {
    pub current: String,
    pub password: String,
    pub password2: String,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct EmailForm {
    pub email: String,
    #[serde(skip_serializing)]
    pub current: String,
}

async fn page(
    state: &AppState,
    user: &User,
    csrf: &CsrfToken,
    status: StatusCode,
    email_form: EmailForm,
    errors: FieldErrors,
    mailed_to: Option<String>,
) -> Result<Response, AppError> {
    let ctx = ctx! { email_form, errors, mailed_to };
    html(
        status,
        "login_settings.html",
        state.page(&Some(user.clone()), csrf, ctx),
    )
}

pub async fn show(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    page(
        &state,
        &user,
        &csrf,
        StatusCode::OK,
        EmailForm::default(),
        FieldErrors::default(),
        None,
    )
    .await
}

/// Whether `password` is the user's current one (bounded like a login).
pub async fn is_current_password(
    state: &AppState,
    user: &User,
    password: &str,
) -> Result<bool, AppError> {
    if password.len() > MAX_PASSWORD_LEN {
        return Ok(false);
    }
    let hash = accounts::find_login(&state.db, &user.email)
        .await?
        .map(|(_, hash)| hash);
    session::verify_password_bounded(state, password.to_string(), hash).await
}

pub async fn change_password(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    headers: axum::http::HeaderMap,
    Form(form): Form<PasswordForm>,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::default();
    check_new_password(&form.password, &form.password2, &mut errors);
    if errors.is_empty() && !is_current_password(&state, &user, &form.current).await? {
        errors.add("current", tr("The password is wrong."));
    }
    if !errors.is_empty() {
        return page(
            &state,
            &user,
            &csrf,
            StatusCode::UNPROCESSABLE_ENTITY,
            EmailForm::default(),
            errors,
            None,
        )
        .await;
    }
    let hash = session::hash_password_bounded(&state, form.password.clone()).await?;
    // This browser stays logged in; every other session ends.
    let name = session::session_cookie_name(state.settings.secure_cookies);
    let this_session = session::cookie_value(&headers, name).unwrap_or_default();
    let mut tx = state.db.begin().await?;
    accounts::set_password(&mut tx, user.id, &hash, &this_session).await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "user.password.change",
        &format!("user:{}", user.id),
        "other sessions ended",
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect("/manage/login", Notice::Saved))
}

pub async fn change_email(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    Form(form): Form<EmailForm>,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::default();
    let email = match check_email(&form.email) {
        Ok(email) => email,
        Err(message) => {
            errors.add("email", message);
            String::new()
        }
    };
    if errors.is_empty() && email == user.email {
        errors.add("email", tr("This is your address already."));
    }
    if errors.is_empty() && accounts::email_exists(&state.db, &email).await? {
        errors.add("email", tr("This email address already has a login."));
    }
    if errors.is_empty() && !is_current_password(&state, &user, &form.current).await? {
        errors.add("current", tr("The password is wrong."));
    }
    if !errors.is_empty() {
        return page(
            &state,
            &user,
            &csrf,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            errors,
            None,
        )
        .await;
    }
    let mut tx = state.db.begin().await?;
    if let Some(token) = accounts::create_verification(&mut tx, user.id, &email).await? {
        let site = state.settings.origin.clone();
        let link = mails::absolute(&state, &format!("/verify/{token}"));
        let subject = trf(
            "{site}: confirm your new address",
            &[("site", site.clone())],
        );
        let ask = trf(
            "To make {email} the address of your login on {site}, open this link within 7 days:",
            &[("email", email.clone()), ("site", site)],
        );
        let body = mails::body(
            &state,
            &[
                format!("{ask}\n{link}"),
                tr("If you did not ask for this, ignore this mail: nothing changes.").to_string(),
            ],
        );
        mail::enqueue(&mut tx, &email, "email_change", &subject, &body).await?;
        audit::record(
            &mut tx,
            &actor(&user),
            "user.email.change.request",
            &format!("user:{}", user.id),
            &email,
        )
        .await?;
    }
    tx.commit().await?;
    page(
        &state,
        &user,
        &csrf,
        StatusCode::OK,
        EmailForm::default(),
        FieldErrors::default(),
        Some(email),
    )
    .await
}
