//! Staff pages: accounts, monitors, vendor zone decisions, the audit log.
//! Every handler takes `StaffUser`, so operators get 403.

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::account::actor;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::{FieldErrors, RowId};
use super::i18n::trf;
use super::session::StaffUser;
use super::{AppState, html};
use crate::control::db::accounts::{self, User};
use crate::control::db::{audit, is_unique_violation, monitors, vendor_zones};

pub async fn index(StaffUser(_): StaffUser) -> Response {
    Redirect::to("/staff/accounts").into_response()
}

pub async fn accounts(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let accounts = accounts::list_accounts(&state.db).await?;
    html(
        StatusCode::OK,
        "staff_accounts.html",
        state.page(&Some(user), &csrf, ctx! { accounts }),
    )
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct MonitorForm {
    pub name: String,
}

/// A monitor on the staff page: its row, its pairs by state, its country.
#[derive(serde::Serialize)]
struct MonitorRow {
    #[serde(flatten)]
    monitor: monitors::Monitor,
    pairs: super::api::PairCounts,
    country: Option<String>,
}

async fn monitors_page(
    state: &AppState,
    user: User,
    csrf: &CsrfToken,
    status: StatusCode,
    form: MonitorForm,
    errors: FieldErrors,
    new_token: Option<(String, String)>,
) -> Result<Response, AppError> {
    let counts = crate::control::db::pairs::counts_by_monitor(&state.db).await?;
    let monitors: Vec<MonitorRow> = monitors::list(&state.db)
        .await?
        .into_iter()
        .map(|monitor| MonitorRow {
            pairs: super::api::PairCounts::from_slots(
                counts.get(&monitor.id).copied().unwrap_or_default(),
            ),
            country: super::api::monitor_country(state, monitor.ip.as_deref()),
            monitor,
        })
        .collect();
    let ctx = ctx! { monitors, form, errors, new_token, states => monitors::STATES };
    html(
        status,
        "staff_monitors.html",
        state.page(&Some(user), csrf, ctx),
    )
}

pub async fn monitors(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    monitors_page(
        &state,
        user,
        &csrf,
        StatusCode::OK,
        MonitorForm::default(),
        FieldErrors::default(),
        None,
    )
    .await
}

/// A monitor name: 1..=64 of letters, digits, '-', '_', '.'.
pub fn check_monitor_name(name: &str) -> Result<(), String> {
    if super::form::is_short_name(name) {
        Ok(())
    } else {
        Err(super::form::SHORT_NAME_RULE.into())
    }
}

pub async fn monitor_create(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
    Form(mut form): Form<MonitorForm>,
) -> Result<Response, AppError> {
    form.name = form.name.trim().to_string();
    let mut errors = FieldErrors::default();
    if let Err(msg) = check_monitor_name(&form.name) {
        errors.add("name", msg);
    }
    if !errors.is_empty() {
        return monitors_page(
            &state,
            user,
            &csrf,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            errors,
            None,
        )
        .await;
    }
    let mut tx = state.db.begin().await?;
    let (id, token) = match monitors::create(&mut tx, &form.name).await {
        Ok(created) => created,
        Err(err) if is_unique_violation(&err) => {
            tx.rollback().await?;
            errors.add("name", "A monitor with this name exists.");
            return monitors_page(
                &state,
                user,
                &csrf,
                StatusCode::UNPROCESSABLE_ENTITY,
                form,
                errors,
                None,
            )
            .await;
        }
        Err(err) => return Err(err.into()),
    };
    audit::record(
        &mut tx,
        &actor(&user),
        "monitor.create",
        &format!("monitor:{id} {}", form.name),
        "",
    )
    .await?;
    tx.commit().await?;
    // Shown once on this response; only the hash is stored.
    let shown = Some((form.name.clone(), token));
    monitors_page(
        &state,
        user,
        &csrf,
        StatusCode::OK,
        MonitorForm::default(),
        FieldErrors::default(),
        shown,
    )
    .await
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct StateForm {
    pub state: String,
}

pub async fn monitor_state(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    RowId(id): RowId,
    Form(form): Form<StateForm>,
) -> Result<Response, AppError> {
    if !monitors::STATES.contains(&form.state.as_str()) {
        return Err(AppError::BadRequest(format!(
            "A monitor's state is one of: {}.",
            monitors::STATES.join(", ")
        )));
    }
    let mut tx = state.db.begin().await?;
    if !monitors::set_state(&mut tx, id, &form.state).await? {
        return Err(AppError::NotFound);
    }
    audit::record(
        &mut tx,
        &actor(&user),
        "monitor.state",
        &format!("monitor:{id}"),
        &form.state,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/staff/monitors").into_response())
}

/// A monitor's page: its self-check and its pairs by state, each with a
/// button to pause it (the selector leaves a paused pair alone) or give it
/// back to the selector.
pub async fn monitor_detail(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    let monitor = monitors::get(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let pairs = crate::control::db::pairs::for_monitor(&state.db, id).await?;
    let country = super::api::monitor_country(&state, monitor.ip.as_deref());
    html(
        StatusCode::OK,
        "staff_monitor.html",
        state.page(&Some(user), &csrf, ctx! { monitor, pairs, country }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct PairForm {
    pub server_id: String,
    /// "1": pause, "0": give back to the selector.
    pub paused: String,
}

pub async fn pair_pause(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    RowId(id): RowId,
    Form(form): Form<PairForm>,
) -> Result<Response, AppError> {
    let server_id: i64 = form
        .server_id
        .parse()
        .map_err(|_| AppError::BadRequest("server_id must be a server's number.".into()))?;
    let paused = match form.paused.as_str() {
        "1" => true,
        "0" => false,
        _ => return Err(AppError::BadRequest("paused must be 1 or 0.".into())),
    };
    let mut tx = state.db.begin().await?;
    let now = crate::control::db::now();
    if !crate::control::db::pairs::set_paused(&mut tx, server_id, id, paused, now).await? {
        return Err(AppError::NotFound);
    }
    audit::record(
        &mut tx,
        &actor(&user),
        "monitor.pair",
        &format!("server:{server_id}"),
        &format!(
            "monitor:{id} {}",
            if paused {
                "paused by staff"
            } else {
                "given back to the selector as a candidate"
            }
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&format!("/staff/monitors/{id}")).into_response())
}

pub async fn vendor_zones(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let zones = vendor_zones::list_all(&state.db).await?;
    html(
        StatusCode::OK,
        "staff_vendor.html",
        state.page(&Some(user), &csrf, ctx! { zones }),
    )
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct DecideForm {
    pub decision: String,
}

pub async fn vendor_decide(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    RowId(id): RowId,
    Form(form): Form<DecideForm>,
) -> Result<Response, AppError> {
    let status = match form.decision.as_str() {
        "approve" => "approved",
        "reject" => "rejected",
        _ => {
            return Err(AppError::BadRequest(
                "The decision is approve or reject.".into(),
            ));
        }
    };
    let zone = vendor_zones::get(&state.db, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let recipients =
        crate::control::db::accounts::mail_recipients(&state.db, zone.account_id).await?;
    let mut tx = state.db.begin().await?;
    if !vendor_zones::decide(&mut tx, id, status, user.id).await? {
        return Err(AppError::NotFound);
    }
    audit::record(
        &mut tx,
        &actor(&user),
        "vendor.decide",
        &format!("vendor_zone:{id}"),
        status,
    )
    .await?;
    // The account is told, in each user's language.
    let values = [("name", zone.name.clone())];
    let approved = status == "approved";
    let subject = || {
        if approved {
            trf("vendor zone {name} approved", &values)
        } else {
            trf("vendor zone {name} not approved", &values)
        }
    };
    let text = || {
        if approved {
            trf(
                "Staff approved the vendor zone {name}: its names are served with the next snapshot.",
                &values,
            )
        } else {
            trf(
                "Staff did not approve the vendor zone {name}. Ask the pool's staff if you want to know why.",
                &values,
            )
        }
    };
    super::mails::tell(
        &mut tx,
        &state,
        &recipients,
        &super::mails::Change {
            kind: "vendor_zone",
            subject: &subject,
            text: &text,
            link: Some("/manage/vendor"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to("/staff/vendor-zones").into_response())
}

pub async fn audit(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let entries = audit::recent(&state.db, 500).await?;
    html(
        StatusCode::OK,
        "staff_audit.html",
        state.page(&Some(user), &csrf, ctx! { entries }),
    )
}

/// The mail queue: what was sent, what waits and why (and, with mail
/// off, the mails themselves).
pub async fn mail(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let mails = crate::control::db::mail::recent(&state.db, 200).await?;
    let waiting = crate::control::db::mail::waiting(&state.db).await?;
    let smtp = state.settings.smtp_url.is_some();
    html(
        StatusCode::OK,
        "staff_mail.html",
        state.page(&Some(user), &csrf, ctx! { mails, waiting, smtp }),
    )
}
