//! Vendor zones, as an operator sees them: the account's applications
//! and the form to apply for one (staff decide in `staff`).

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde::{Deserialize, Serialize};

use super::account::actor;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::FieldErrors;
use super::i18n::{tr, trf};
use super::mails;
use super::notice::{self, Notice};
use super::session::CurrentUser;
use super::{AppState, html};
use crate::control::db::accounts::{self, User};
use crate::control::db::{audit, vendor_zones};
use crate::control::zone_tree;

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct VendorForm {
    pub name: String,
    pub client_type: String,
    pub description: String,
}

async fn vendor_page(
    state: &AppState,
    user: &User,
    csrf: &CsrfToken,
    status: StatusCode,
    form: VendorForm,
    errors: FieldErrors,
) -> Result<Response, AppError> {
    let zones = vendor_zones::list_for_account(&state.db, user.account_id).await?;
    let ctx = ctx! { zones, form, errors, client_types => vendor_zones::CLIENT_TYPES };
    html(
        status,
        "vendor.html",
        state.page(&Some(user.clone()), csrf, ctx),
    )
}

pub async fn vendor_list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    vendor_page(
        &state,
        &user,
        &csrf,
        StatusCode::OK,
        VendorForm::default(),
        FieldErrors::default(),
    )
    .await
}

/// A vendor zone label: 2..=32 of a-z 0-9 '-', a letter first, not a pool zone.
fn check_vendor_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !(2..=32).contains(&name.len())
        || !ok_chars
        || !name.starts_with(|c: char| c.is_ascii_lowercase())
        || name.ends_with('-')
    {
        return Err(tr(
            "Use 2 to 32 lower-case letters, digits or hyphens, starting with a letter.",
        )
        .into());
    }
    if zone_tree::lookup(name).is_some() || name == crate::shared::zones::GREAT_BRITAIN_CODE {
        return Err(tr("This name is a country or continent zone of the pool.").into());
    }
    Ok(())
}

pub async fn vendor_apply(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    Form(mut form): Form<VendorForm>,
) -> Result<Response, AppError> {
    form.name = form.name.trim().to_ascii_lowercase();
    let mut errors = FieldErrors::default();
    if let Err(msg) = check_vendor_name(&form.name) {
        errors.add("name", msg);
    }
    if !vendor_zones::CLIENT_TYPES.contains(&form.client_type.as_str()) {
        errors.add(
            "client_type",
            tr("Choose the kind of client from the list."),
        );
    }
    let description = form.description.trim().to_string();
    if description.is_empty() {
        errors.add(
            "description",
            tr("Describe the product that will use the zone."),
        );
    } else if description.len() > 2000 {
        errors.add("description", tr("Keep it under 2000 characters."));
    }
    let recipients = accounts::mail_recipients(&state.db, user.account_id).await?;
    let mut tx = state.db.begin().await?;
    if errors.is_empty() && vendor_zones::name_taken(&mut tx, &form.name).await? {
        errors.add("name", tr("This name is already taken or applied for."));
    }
    if !errors.is_empty() {
        tx.rollback().await?;
        return vendor_page(
            &state,
            &user,
            &csrf,
            StatusCode::UNPROCESSABLE_ENTITY,
            form,
            errors,
        )
        .await;
    }
    let id = vendor_zones::apply(
        &mut tx,
        user.account_id,
        &form.name,
        &form.client_type,
        &description,
    )
    .await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "vendor.apply",
        &format!("vendor_zone:{id} {}", form.name),
        &form.client_type,
    )
    .await?;
    let values = [("actor", user.email.clone()), ("name", form.name.clone())];
    mails::tell(
        &mut tx,
        &state,
        &recipients,
        &mails::Change {
            kind: "vendor_zone",
            subject: &|| trf("vendor zone {name} submitted", &values[1..]),
            text: &|| {
                trf(
                    "{actor} applied for the vendor zone {name}. Staff will review the application; you get a mail when it is decided.",
                    &values,
                )
            },
            link: Some("/manage/vendor"),
        },
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect("/manage/vendor", Notice::VendorApplied))
}
