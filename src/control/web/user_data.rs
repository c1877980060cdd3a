//! A user's own data (web/README.md, "Your data and deleting your
//! login"): `/manage/login/data.json` downloads everything stored about
//! them; `/manage/login/delete` asks for the login to be deleted 7 days
//! later (every session ends; logging in before then cancels it,
//! `account::login`), refused while they are the last user of an account
//! that still has servers, vendor zones or monitors. `run` carries out
//! the deletions that are due.

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::account::actor;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::FieldErrors;
use super::i18n::{self, tr, trf};
use super::login_settings::is_current_password;
use super::mails;
use super::notice::{self, Notice};
use super::session::LoggedIn;
use super::{AppState, html};
use crate::control::db::accounts::{self, User};
use crate::control::db::audit::{self, Actor};
use crate::control::db::user_data::{self, Blockers, LOGIN_DELETION_DELAY_SECS};
use crate::control::db::{self, DbError, mail};
use crate::control::timefmt;

/// Seconds between two looks for deletions that are due.
const DELETION_CHECK_SECS: u64 = 600;

/// `GET /manage/login/data.json`: everything stored about the user.
pub async fn download(
    State(state): State<AppState>,
    LoggedIn(user): LoggedIn,
) -> Result<Response, AppError> {
    let now = db::now();
    let mut document = serde_json::json!({
        "site": state.settings.origin,
        "exported_at": timefmt::rfc3339(now),
        "times": "unix seconds, UTC",
    });
    if let (Some(object), serde_json::Value::Object(data)) = (
        document.as_object_mut(),
        user_data::export(&state.db, user.id).await?,
    ) {
        object.extend(data);
    }
    let body = serde_json::to_vec_pretty(&document)
        .map_err(|e| AppError::Internal(format!("export of user {}: {e}", user.id)))?;
    let mut tx = state.db.begin().await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "user.export",
        &format!("user:{}", user.id),
        "",
    )
    .await?;
    tx.commit().await?;
    let mut response = (StatusCode::OK, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static("attachment; filename=\"timepool-my-data.json\""),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DeleteForm {
    pub current: String,
}

async fn page(
    state: &AppState,
    user: &User,
    csrf: &CsrfToken,
    status: StatusCode,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let mut tx = state.db.pool.begin().await?;
    let blockers = user_data::blockers(&mut tx, state.db.engine, user.id, db::now()).await?;
    tx.rollback().await?;
    let days = LOGIN_DELETION_DELAY_SECS / 86_400;
    let ctx = ctx! { blockers, errors, days };
    html(
        status,
        "delete_login.html",
        state.page(&Some(user.clone()), csrf, ctx),
    )
}

/// `GET /manage/login/delete`: what deleting the login means, and the form.
pub async fn show(
    State(state): State<AppState>,
    LoggedIn(user): LoggedIn,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    page(&state, &user, &csrf, StatusCode::OK, FieldErrors::default()).await
}

/// `POST /manage/login/delete`: with the current password, the login is
/// to be deleted in 7 days; every session ends now.
pub async fn request(
    State(state): State<AppState>,
    LoggedIn(user): LoggedIn,
    csrf: CsrfToken,
    Form(form): Form<DeleteForm>,
) -> Result<Response, AppError> {
    let now = db::now();
    let mut errors = FieldErrors::default();
    if !is_current_password(&state, &user, &form.current).await? {
        errors.add("current", tr("The password is wrong."));
        return page(
            &state,
            &user,
            &csrf,
            StatusCode::UNPROCESSABLE_ENTITY,
            errors,
        )
        .await;
    }
    let due = now + LOGIN_DELETION_DELAY_SECS;
    let language = accounts::language_of(&state.db, user.id).await?;
    let mut tx = state.db.begin().await?;
    if user_data::blockers(&mut tx, state.db.engine, user.id, now)
        .await?
        .any()
    {
        // The page says why.
        tx.rollback().await?;
        return page(&state, &user, &csrf, StatusCode::CONFLICT, errors).await;
    }
    user_data::request_deletion(&mut tx, user.id, now).await?;
    let (subject, body) = i18n::in_language(language.as_deref(), || {
        let values = [
            ("email", user.email.clone()),
            ("date", i18n::current().date(due)),
            ("site", state.settings.origin.clone()),
        ];
        let subject = trf("{site}: your login is to be deleted", &values);
        let body = mails::body(
            &state,
            &[
                trf(
                    "You asked for your login {email} to be deleted. It is deleted on {date} (UTC), with everything stored about it. To keep it, log in before then: logging in cancels the deletion.",
                    &values,
                ),
                mails::absolute(&state, "/login"),
            ],
        );
        (subject, body)
    });
    mail::enqueue(&mut tx, &user.email, "login_deletion", &subject, &body).await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "user.delete.request",
        &format!("user:{}", user.id),
        &format!("due {}", timefmt::rfc3339(due)),
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect("/", Notice::LoginDeletionRequested))
}

/// What the due deletions did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DeletionReport {
    pub deleted: usize,
    /// Not deleted: the user had become the last user of an account with
    /// servers, vendor zones or monitors (told by mail).
    pub refused: usize,
}

/// Carries out the deletions due at `now` (a test passes its own clock).
pub async fn delete_due(state: &AppState, now: i64) -> Result<DeletionReport, DbError> {
    let mut report = DeletionReport::default();
    let job = Actor {
        user_id: None,
        name: "login deletion".to_string(),
    };
    for (user_id, email) in user_data::due_deletions(&state.db, now).await? {
        let language = accounts::language_of(&state.db, user_id).await?;
        let mut tx = state.db.begin().await?;
        let blockers = user_data::blockers(&mut tx, state.db.engine, user_id, now).await?;
        if blockers.any() {
            if user_data::cancel_deletion(&mut tx, user_id).await? {
                refused_mail(&mut tx, state, &email, language.as_deref(), &blockers).await?;
                audit::record(
                    &mut tx,
                    &job,
                    "user.delete.refused",
                    &format!("user:{user_id}"),
                    "the last user of an account that still has servers, vendor zones or monitors",
                )
                .await?;
                report.refused += 1;
            }
        } else if user_data::delete_login(&mut tx, user_id, &email).await? {
            audit::record(&mut tx, &job, "user.delete", &format!("user:{user_id}"), "").await?;
            report.deleted += 1;
        }
        tx.commit().await?;
    }
    Ok(report)
}

async fn refused_mail(
    tx: &mut db::Tx,
    state: &AppState,
    email: &str,
    language: Option<&str>,
    blockers: &Blockers,
) -> Result<(), DbError> {
    let (subject, body) = i18n::in_language(language, || {
        let values = [
            ("email", email.to_string()),
            ("site", state.settings.origin.clone()),
            ("servers", blockers.servers.to_string()),
            ("zones", blockers.vendor_zones.to_string()),
            ("monitors", blockers.monitors.to_string()),
        ];
        let subject = trf("{site}: your login was not deleted", &values);
        let why = if blockers.sole_owner {
            trf(
                "Your login {email} was not deleted: you are the only owner of an account that has other users. Make one of them an owner, then ask again:",
                &values,
            )
        } else {
            trf(
                "Your login {email} was not deleted: you are the last user of an account that still has {servers} servers, {zones} vendor zones and {monitors} monitors. Delete them or invite another user, then ask again:",
                &values,
            )
        };
        let body = mails::body(
            state,
            &[why, mails::absolute(state, "/manage/login/delete")],
        );
        (subject, body)
    });
    mail::enqueue(tx, email, "login_deletion_refused", &subject, &body).await?;
    Ok(())
}

/// Carries out due deletions every few minutes until `stopping`.
pub async fn run(state: AppState, stopping: tokio::sync::watch::Receiver<bool>) {
    let every = std::time::Duration::from_secs(DELETION_CHECK_SECS);
    super::run_every(every, stopping, || async {
        match delete_due(&state, db::now()).await {
            Ok(report) if report != DeletionReport::default() => {
                tracing::info!(?report, "login deletions done")
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "login deletions failed; tried again later"),
        }
    })
    .await
}
