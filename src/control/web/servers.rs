//! An operator's servers: list, add, settings, scheduled deletion.

use std::net::IpAddr;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::account::actor;
use super::address::{self, check_public, zone_for_address};
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::{FieldErrors, RowId};
use super::i18n::{self, tr, trf};
use super::join_check;
use super::mails;
use super::notice::{self, Notice};
use super::session::CurrentUser;
use super::{AppState, html};
use crate::control::db::accounts::{self, User};
use crate::control::db::servers::{self, MIN_DELETION_DELAY_SECS, NewServer};
use crate::control::db::{self, alerts, audit, is_unique_violation, server_verification};
use crate::control::timefmt;
use crate::control::zone_tree;

/// The pool's netspeed choices in kbit/s (web/README.md); 0 = monitor only.
pub const NETSPEEDS: &[i64] = &[
    0, 512, 1500, 3000, 6000, 10_000, 12_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    1_500_000, 2_000_000, 3_000_000,
];
/// The default for a new server. The pool's UI uses 10000, which is not one
/// of its listed steps; we keep the pool's choice and accept it as a value.
pub const DEFAULT_NETSPEED: i64 = 10_000;

/// A netspeed as the picker and the server list show it: "1,5 Gbit" in
/// German. The units are symbols, the same in every language.
pub fn netspeed_label(kbit: i64) -> String {
    let language = i18n::current();
    let scaled = |value: i64, unit: i64| {
        if value % unit == 0 {
            language.integer(value / unit)
        } else {
            language.fixed(value as f64 / unit as f64, 1)
        }
    };
    match kbit {
        0 => tr("Monitor only (not in DNS)").to_string(),
        k if k >= 1_000_000 => format!("{} Gbit", scaled(k, 1_000_000)),
        k if k >= 1000 => format!("{} Mbit", scaled(k, 1000)),
        k => format!("{} kbit", language.integer(k)),
    }
}

fn netspeed_choices() -> Vec<(i64, String)> {
    NETSPEEDS.iter().map(|&k| (k, netspeed_label(k))).collect()
}

#[derive(Deserialize, Serialize)]
#[serde(default)]
pub struct AddForm {
    pub address: String,
    /// A country zone, or empty for "from GeoIP".
    pub zone: String,
    pub netspeed: String,
    /// Set by the handler when the address is another account's: the page
    /// offers to claim it.
    #[serde(skip_deserializing)]
    pub claimable: Option<String>,
}

impl Default for AddForm {
    fn default() -> AddForm {
        AddForm {
            address: String::new(),
            zone: String::new(),
            netspeed: DEFAULT_NETSPEED.to_string(),
            claimable: None,
        }
    }
}

/// The netspeed cap of unverified servers (`--unverified-netspeed-max`)
/// applied to a chosen netspeed: the message when it is over.
fn over_unverified_cap(state: &AppState, netspeed: i64) -> Option<String> {
    let cap = state.settings.unverified_netspeed_max?;
    (netspeed > cap).then(|| {
        trf(
            "Until a server is verified its netspeed is at most {cap}. Choose {cap} or less now; once it is verified from its address, raise it.",
            &[("cap", netspeed_label(cap))],
        )
    })
}

#[derive(Deserialize, Default)]
pub struct ListParams {
    pub added: Option<usize>,
}

async fn list_page(
    state: &AppState,
    user: &User,
    csrf: &CsrfToken,
    status: StatusCode,
    form: AddForm,
    errors: FieldErrors,
    added: Option<usize>,
) -> Result<Response, AppError> {
    let servers = servers::list_for_account(&state.db, user.account_id).await?;
    let ctx = ctx! {
        servers, form, errors, added,
        netspeeds => netspeed_choices(),
        countries => zone_tree::all_countries(),
        allow_loopback => state.settings.allow_loopback,
    };
    html(
        status,
        "manage.html",
        state.page(&Some(user.clone()), csrf, ctx),
    )
}

pub async fn list(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    Query(params): Query<ListParams>,
) -> Result<Response, AppError> {
    list_page(
        &state,
        &user,
        &csrf,
        StatusCode::OK,
        AddForm::default(),
        FieldErrors::default(),
        params.added,
    )
    .await
}

fn parse_netspeed(text: &str, errors: &mut FieldErrors) -> i64 {
    match text.trim().parse::<i64>() {
        Ok(n) if NETSPEEDS.contains(&n) => n,
        _ => {
            errors.add("netspeed", tr("Choose a connection speed from the list."));
            DEFAULT_NETSPEED
        }
    }
}

/// Empty = automatic (GeoIP); otherwise a country zone.
fn parse_zone(text: &str, errors: &mut FieldErrors) -> Option<&'static str> {
    if text.trim().is_empty() {
        return None;
    }
    match zone_tree::canonical(text) {
        Some(zone) if zone_tree::is_country(zone) => Some(zone),
        _ => {
            errors.add("zone", tr("Choose a country from the list."));
            None
        }
    }
}

pub async fn add(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    Form(form): Form<AddForm>,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::default();
    let netspeed = parse_netspeed(&form.netspeed, &mut errors);
    let zone_override = parse_zone(&form.zone, &mut errors);

    // An account whose user has not confirmed their address adds nothing,
    // nor one with a server waiting for verification (nothing is resolved
    // or asked either).
    let waiting = match state.settings.unverified_netspeed_max {
        Some(_) => {
            server_verification::unverified_of_account(&state.db, user.account_id, db::now())
                .await?
        }
        None => Vec::new(),
    };
    if !user.email_verified {
        errors.add(
            "address",
            trf(
                "Confirm your address first: open the link in the mail we sent to {email}.",
                &[("email", user.email.clone())],
            ),
        );
    } else if !waiting.is_empty() {
        errors.add(
            "address",
            trf(
                "Verify or remove your unverified servers first ({addresses}): an account adds servers one verified server at a time.",
                &[("addresses", waiting.join(", "))],
            ),
        );
    }
    if let Some(message) = over_unverified_cap(&state, netspeed) {
        errors.add("netspeed", message);
    }
    if !user.email_verified || !waiting.is_empty() {
        return list_page(
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
    let resolved = match address::resolve(&form.address).await {
        Ok(r) => Some(r),
        Err(msg) => {
            errors.add("address", msg);
            None
        }
    };
    // Each address with the zone it would get.
    let mut planned: Vec<(IpAddr, Option<String>)> = Vec::new();
    if let Some(resolved) = &resolved {
        for addr in &resolved.addresses {
            if let Err(reason) = check_public(*addr, state.settings.allow_loopback) {
                let msg = match &resolved.hostname {
                    Some(host) => trf(
                        "{host} resolves to {address}, which {reason}; only public unicast addresses can join.",
                        &[
                            ("host", host.clone()),
                            ("address", addr.to_string()),
                            ("reason", i18n::current().translate(reason).to_string()),
                        ],
                    ),
                    None => trf(
                        "{address} {reason}; only public unicast addresses can join.",
                        &[
                            ("address", addr.to_string()),
                            ("reason", i18n::current().translate(reason).to_string()),
                        ],
                    ),
                };
                errors.add("address", msg);
                break;
            }
            planned.push((*addr, zone_for_address(&state.geo, *addr)));
        }
    }
    if errors.is_empty() && zone_override.is_none() && planned.iter().any(|(_, geo)| geo.is_none())
    {
        errors.add(
            "zone",
            tr("We cannot tell where this server is; choose its country."),
        );
    }
    if errors.is_empty() && planned.len() > join_check::MAX_ADDRESSES {
        errors.add(
            "address",
            trf(
                "This hostname has {count} addresses; add at most {max} at once, by address.",
                &[
                    ("count", planned.len().to_string()),
                    ("max", join_check::MAX_ADDRESSES.to_string()),
                ],
            ),
        );
    }
    // Last, when all else is right: the server must answer (outside any
    // transaction: this waits on the network).
    if errors.is_empty()
        && let Some(settings) = &state.settings.join_check
    {
        let addresses: Vec<IpAddr> = planned.iter().map(|(addr, _)| *addr).collect();
        if let Err(message) = join_check::check_all(settings, &addresses).await {
            errors.add("address", message);
        }
    }
    if !errors.is_empty() {
        return list_page(
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

    let hostname = resolved.as_ref().and_then(|r| r.hostname.clone());
    let mut tx = state.db.begin().await?;
    let mut form = form;
    // Checked again with the account locked: two adds at once do not both
    // get past "one unverified server at a time".
    if state.settings.unverified_netspeed_max.is_some() {
        accounts::lock_account(&mut tx, state.db.engine, user.account_id).await?;
        if server_verification::has_unverified(&mut tx, user.account_id, db::now()).await? {
            tx.rollback().await?;
            return Err(AppError::Conflict(
                tr("Another server of the account was added meanwhile; verify it first.")
                    .to_string(),
            ));
        }
    }
    for (addr, geo_zone) in &planned {
        let text = addr.to_string();
        let taken_msg = trf(
            "{address} is already in the pool.",
            &[("address", text.clone())],
        );
        match servers::registration_of(&mut tx, &text).await? {
            Some((_, account_id)) if account_id == user.account_id => {
                errors.add(
                    "address",
                    trf(
                        "{address} is one of your servers already.",
                        &[("address", text.clone())],
                    ),
                );
                break;
            }
            Some(_) => {
                errors.add(
                    "address",
                    trf(
                        "{address} is registered by another account. If you run it, claim it below.",
                        &[("address", text.clone())],
                    ),
                );
                form.claimable = Some(text.clone());
                break;
            }
            None => {}
        }
        let new = NewServer {
            account_id: user.account_id,
            address: &text,
            ip_version: if addr.is_ipv4() { 4 } else { 6 },
            hostname: hostname.as_deref(),
            geo_zone: geo_zone.as_deref(),
            zone_override,
            netspeed,
        };
        match servers::insert(&mut tx, &new).await {
            Ok(id) => {
                let details = format!(
                    "netspeed={netspeed} zone={}",
                    zone_override.unwrap_or("auto")
                );
                audit::record(
                    &mut tx,
                    &actor(&user),
                    "server.add",
                    &format!("server:{id} {text}"),
                    &details,
                )
                .await?;
            }
            Err(err) if is_unique_violation(&err) => {
                errors.add("address", taken_msg);
                break;
            }
            Err(err) => return Err(err.into()),
        }
    }
    if !errors.is_empty() {
        // Nothing of this submission is kept: all addresses or none.
        tx.rollback().await?;
        return list_page(
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
    tx.commit().await?;
    Ok(Redirect::to(&i18n::url(&format!("/manage?added={}", planned.len()))).into_response())
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SettingsForm {
    pub zone: String,
    pub netspeed: String,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct DeletionForm {
    pub on: String,
}

/// What the server page's forms show: what was typed (none: the stored
/// settings) and the messages next to the fields.
#[derive(Default)]
struct DetailForms {
    settings: Option<SettingsForm>,
    deletion: DeletionForm,
    errors: FieldErrors,
}

async fn detail_page(
    (state, user, csrf): (&AppState, &User, &CsrfToken),
    id: i64,
    status: StatusCode,
    forms: DetailForms,
) -> Result<Response, AppError> {
    let DetailForms {
        settings,
        deletion,
        errors,
    } = forms;
    let server = servers::get_for_account(&state.db, user.account_id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let settings = settings.unwrap_or_else(|| SettingsForm {
        zone: server.zone_override.clone().unwrap_or_default(),
        netspeed: server.netspeed.to_string(),
    });
    let earliest_deletion = timefmt::date(db::now() + MIN_DELETION_DELAY_SECS + 86_399);
    let pairs = db::pairs::for_server(&state.db, server.id).await?;
    // A "check now" of the last 10 minutes: how many pairs have reported
    // since, and the page reloads itself until every checking pair has.
    let check_requested_at = db::pairs::check_requested_at(&state.db, server.id)
        .await?
        .filter(|at| *at > db::now() - 600);
    // The pairs the request made due (not paused, there before it, of a
    // monitor whose clock is fine: the others check nothing), and how many
    // of them have reported since.
    let due: Vec<&db::pairs::PairView> = check_requested_at.map_or(Vec::new(), |at| {
        pairs
            .iter()
            .filter(|p| p.status != "paused" && p.status_since < at && !p.monitor_clock_off)
            .collect()
    });
    let checking = due.len();
    let checked_since = due
        .iter()
        .filter(|p| {
            p.score_ts
                .zip(check_requested_at)
                .is_some_and(|(ts, at)| ts >= at)
        })
        .count();
    let check_pending = check_requested_at.is_some() && checked_since < checking;
    let ctx = ctx! {
        server, settings, deletion, errors, earliest_deletion,
        pairs, check_requested_at, checked_since, check_pending, checking,
        netspeeds => netspeed_choices(),
        countries => zone_tree::all_countries(),
    };
    html(
        status,
        "server.html",
        state.page(&Some(user.clone()), csrf, ctx),
    )
}

pub async fn detail(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    detail_page(
        (&state, &user, &csrf),
        id,
        StatusCode::OK,
        DetailForms::default(),
    )
    .await
}

pub async fn update(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    RowId(id): RowId,
    Form(form): Form<SettingsForm>,
) -> Result<Response, AppError> {
    let server = servers::get_for_account(&state.db, user.account_id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut errors = FieldErrors::default();
    let netspeed = parse_netspeed(&form.netspeed, &mut errors);
    let zone_override = parse_zone(&form.zone, &mut errors);
    if errors.is_empty() && zone_override.is_none() && server.geo_zone.is_none() {
        errors.add(
            "zone",
            tr("We cannot tell where this server is; choose its country."),
        );
    }
    // An unverified server may lower its netspeed, not raise it past the cap.
    if server.verified_at.is_none()
        && netspeed > server.netspeed
        && let Some(message) = over_unverified_cap(&state, netspeed)
    {
        errors.add("netspeed", message);
    }
    if !errors.is_empty() {
        let forms = DetailForms {
            settings: Some(form),
            errors,
            ..DetailForms::default()
        };
        return detail_page(
            (&state, &user, &csrf),
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            forms,
        )
        .await;
    }
    let mut tx = state.db.begin().await?;
    if !servers::update_settings(&mut tx, user.account_id, id, netspeed, zone_override).await? {
        return Err(AppError::NotFound);
    }
    let details = format!(
        "netspeed={netspeed} zone={}",
        zone_override.unwrap_or("auto")
    );
    audit::record(
        &mut tx,
        &actor(&user),
        "server.settings",
        &format!("server:{id} {}", server.address),
        &details,
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect(
        &format!("/manage/servers/{id}"),
        Notice::Saved,
    ))
}

pub async fn schedule_deletion(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    RowId(id): RowId,
    Form(form): Form<DeletionForm>,
) -> Result<Response, AppError> {
    let server = servers::get_for_account(&state.db, user.account_id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut errors = FieldErrors::default();
    let earliest = db::now() + MIN_DELETION_DELAY_SECS;
    let when = match timefmt::parse_date(&form.on) {
        None => {
            errors.add("on", tr("Enter a date as YYYY-MM-DD."));
            0
        }
        // The server leaves at the end of the chosen day (UTC).
        Some(midnight) if midnight + 86_399 < earliest => {
            errors.add(
                "on",
                trf(
                    "Choose {date} or later: deletion is at least 3 days out.",
                    &[("date", timefmt::date(earliest + 86_399))],
                ),
            );
            0
        }
        Some(midnight) => midnight + 86_399,
    };
    if !errors.is_empty() {
        let forms = DetailForms {
            settings: None,
            deletion: form,
            errors,
        };
        return detail_page(
            (&state, &user, &csrf),
            id,
            StatusCode::UNPROCESSABLE_ENTITY,
            forms,
        )
        .await;
    }
    let recipients = accounts::mail_recipients(&state.db, user.account_id).await?;
    let mut tx = state.db.begin().await?;
    if !servers::set_deletion(&mut tx, user.account_id, id, Some(when)).await? {
        return Err(AppError::NotFound);
    }
    let page = format!("/manage/servers/{id}");
    let values = || {
        [
            ("actor", user.email.clone()),
            ("address", server.address.clone()),
            ("date", i18n::current().date(when)),
        ]
    };
    mails::tell(
        &mut tx,
        &state,
        &recipients,
        &mails::Change {
            kind: "server_deletion",
            subject: &|| trf("{address} leaves the pool at the end of {date}", &values()[1..]),
            text: &|| {
                trf(
                    "{actor} scheduled the deletion of the server {address}: it leaves the pool at the end of {date} (UTC). To keep it, cancel the deletion on its page:",
                    &values(),
                )
            },
            link: Some(&page),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "server.delete.schedule",
        &format!("server:{id} {}", server.address),
        &timefmt::rfc3339(when),
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect(
        &format!("/manage/servers/{id}"),
        Notice::DeletionScheduled,
    ))
}

/// "Check now": every pair of the server is due at once (at most once a
/// minute per server, 20 servers per account in 10 minutes); the monitors
/// pick it up at their next request.
pub async fn check_now(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    let server = servers::get_for_account(&state.db, user.account_id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let page = format!("/manage/servers/{id}");
    let notice =
        match db::pairs::request_check(&state.db, user.account_id, server.id, 60, db::now()).await?
        {
            db::pairs::CheckRequest::Requested => Notice::CheckRequested,
            db::pairs::CheckRequest::TooSoon => Notice::CheckTooSoon,
            db::pairs::CheckRequest::AccountLimit => Notice::CheckLimit,
        };
    Ok(notice::redirect(&page, notice))
}

pub async fn cancel_deletion(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    let server = servers::get_for_account(&state.db, user.account_id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    let recipients = accounts::mail_recipients(&state.db, user.account_id).await?;
    let mut tx = state.db.begin().await?;
    if !servers::set_deletion(&mut tx, user.account_id, id, None).await? {
        return Err(AppError::NotFound);
    }
    // A removal by the pool's rules, cancelled, is not scheduled again at
    // the next pass: the alert state starts over.
    alerts::forget(&mut tx, id).await?;
    let page = format!("/manage/servers/{id}");
    let values = [
        ("actor", user.email.clone()),
        ("address", server.address.clone()),
    ];
    mails::tell(
        &mut tx,
        &state,
        &recipients,
        &mails::Change {
            kind: "server_deletion_cancelled",
            subject: &|| trf("{address} stays in the pool", &values[1..]),
            text: &|| {
                trf(
                    "{actor} cancelled the deletion of the server {address}; it stays in the pool.",
                    &values,
                )
            },
            link: Some(&page),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "server.delete.cancel",
        &format!("server:{id} {}", server.address),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect(
        &format!("/manage/servers/{id}"),
        Notice::DeletionCancelled,
    ))
}
