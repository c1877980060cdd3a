//! Verified servers and claimed addresses (web/README.md, "Owners,
//! members and verified servers"), the pool's way: the control plane gives
//! a one-time URL, and a request to it *from the server's own address*
//! shows that whoever asked runs the server. Asked by the server's
//! account, it verifies the server (its netspeed may then go past
//! `--unverified-netspeed-max`); asked by another account, it is a claim:
//! the server moves to that account, and both accounts are told. Staff may
//! verify a server by hand (`/staff/servers`).

use axum::extract::{Extension, Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, extract::ConnectInfo};
use serde::Deserialize;

use super::account::actor;
use super::client_addr;
use super::csrf::CsrfToken;
use super::error::AppError;
use super::form::RowId;
use super::i18n::{tr, trf};
use super::mails;
use super::notice::{self, Notice};
use super::session::{CurrentUser, StaffUser};
use super::{AppState, html};
use crate::control::db::server_verification::{self as verification, VERIFY_TTL_SECS};
use crate::control::db::{self, accounts, audit, servers};

/// The page with the URL to fetch from the server, and how.
fn url_page(
    state: &AppState,
    user: &accounts::User,
    csrf: &CsrfToken,
    address: &str,
    token: &str,
    claim: bool,
) -> Result<Response, AppError> {
    let url = format!("{}/verify-server/{token}", state.settings.site_url);
    let family = if address.contains(':') { "-6" } else { "-4" };
    let bind = if address.contains(':') {
        format!("[{address}]")
    } else {
        address.to_string()
    };
    let hours = VERIFY_TTL_SECS / 3600;
    let ctx = ctx! { address, link => url, family, bind, claim, hours };
    html(
        StatusCode::OK,
        "verify_server.html",
        state.page(&Some(user.clone()), csrf, ctx),
    )
}

/// `POST /manage/servers/{id}/verify`: a verification URL for one of the
/// account's servers.
pub async fn start(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    let server = servers::get_for_account(&state.db, user.account_id, id)
        .await?
        .ok_or(AppError::NotFound)?;
    if server.verified_at.is_some() {
        return Ok(notice::redirect(
            &format!("/manage/servers/{id}"),
            Notice::Saved,
        ));
    }
    let mut tx = state.db.begin().await?;
    let token = verification::create(&mut tx, id, user.account_id, db::now()).await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "server.verify.start",
        &format!("server:{id} {}", server.address),
        "",
    )
    .await?;
    tx.commit().await?;
    url_page(&state, &user, &csrf, &server.address, &token, false)
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct ClaimForm {
    pub address: String,
}

/// `POST /manage/claims`: a verification URL that, fetched from the
/// address, moves another account's server to this one.
pub async fn claim(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    Form(form): Form<ClaimForm>,
) -> Result<Response, AppError> {
    if !user.email_verified {
        return Err(AppError::BadRequest(
            tr("Confirm your address first; then you can add or claim servers.").to_string(),
        ));
    }
    // Only the canonical text of an address is ever registered.
    let address = form
        .address
        .trim()
        .parse::<std::net::IpAddr>()
        .map(|ip| ip.to_string())
        .map_err(|_| AppError::BadRequest(tr("This is not an IP address.").to_string()))?;
    let mut tx = state.db.begin().await?;
    let Some((server_id, account_id)) = servers::registration_of(&mut tx, &address).await? else {
        return Err(AppError::NotFound);
    };
    if account_id == user.account_id {
        return Ok(notice::redirect(
            &format!("/manage/servers/{server_id}"),
            Notice::Saved,
        ));
    }
    let token = verification::create(&mut tx, server_id, user.account_id, db::now()).await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "server.claim.start",
        &format!("server:{server_id} {address}"),
        &format!("from account:{account_id}"),
    )
    .await?;
    tx.commit().await?;
    url_page(&state, &user, &csrf, &address, &token, true)
}

/// A plain-text answer for `curl`.
fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

/// `GET /verify-server/{token}`, fetched from the server itself.
pub async fn finish(
    State(state): State<AppState>,
    connect: Option<Extension<ConnectInfo<std::net::SocketAddr>>>,
    headers: HeaderMap,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let now = db::now();
    let Some(open) = verification::find_open(&state.db, &token, now).await? else {
        return Ok(text(
            StatusCode::NOT_FOUND,
            tr("This verification link is unknown, used or expired; make a new one on the server's page.").to_string(),
        ));
    };
    let peer = connect.map(|Extension(c)| c.0);
    let from = client_addr::client_ip(peer, &headers, &state.settings.trusted_proxies);
    let from_server = from.is_some_and(|ip| ip.to_string() == open.address);
    if !from_server {
        // Nothing is used up: the operator runs it again from the server.
        let seen = from.map_or_else(|| "?".to_string(), |ip| ip.to_string());
        return Ok(text(
            StatusCode::FORBIDDEN,
            trf(
                "This request came from {seen}, not from {address}: run it on the server itself, from that address.",
                &[("seen", seen), ("address", open.address.clone())],
            ),
        ));
    }
    let mut tx = state.db.begin().await?;
    if !verification::use_once(&mut tx, &open, now).await? {
        return Ok(text(StatusCode::NOT_FOUND, tr("This verification link is unknown, used or expired; make a new one on the server's page.").to_string()));
    }
    let who = audit::Actor {
        user_id: None,
        name: format!("request from {}", open.address),
    };
    let target = format!("server:{} {}", open.server_id, open.address);
    if !open.is_claim() {
        verification::mark_verified(&mut tx, open.server_id, now).await?;
        audit::record(&mut tx, &who, "server.verify", &target, "from its address").await?;
        tx.commit().await?;
        return Ok(text(
            StatusCode::OK,
            trf("{address} is verified.", &[("address", open.address)]),
        ));
    }
    if !verification::move_server(
        &mut tx,
        open.server_id,
        open.server_account_id,
        open.account_id,
        now,
    )
    .await?
    {
        return Ok(text(
            StatusCode::CONFLICT,
            tr("The server changed meanwhile; make a new link and try again.").to_string(),
        ));
    }
    audit::record(
        &mut tx,
        &who,
        "server.claim",
        &target,
        &format!(
            "moved from account:{} to account:{}",
            open.server_account_id, open.account_id
        ),
    )
    .await?;
    claim_mails(&mut tx, &state, &open).await?;
    tx.commit().await?;
    Ok(text(
        StatusCode::OK,
        trf(
            "{address} is verified and now in your account.",
            &[("address", open.address)],
        ),
    ))
}

/// Both accounts are told of a claim.
async fn claim_mails(
    tx: &mut db::Tx,
    state: &AppState,
    open: &verification::OpenVerification,
) -> Result<(), db::DbError> {
    let values = [("address", open.address.clone())];
    let old = accounts::mail_recipients(&state.db, open.server_account_id).await?;
    mails::tell(
        tx,
        state,
        &old,
        &mails::Change {
            kind: "server_claimed_away",
            subject: &|| trf("{address} is no longer in your account", &values),
            text: &|| {
                trf(
                    "Another account claimed the server {address}: a request from that address showed that they run it. It has moved to their account with its history. If this is wrong, write to the pool's staff.",
                    &values,
                )
            },
            link: None,
        },
    )
    .await?;
    let new = accounts::mail_recipients(&state.db, open.account_id).await?;
    let page = format!("/manage/servers/{}", open.server_id);
    mails::tell(
        tx,
        state,
        &new,
        &mails::Change {
            kind: "server_claimed",
            subject: &|| trf("{address} is now in your account", &values),
            text: &|| {
                trf(
                    "The server {address} is verified from its address and has moved to your account; its former account is told. Its page:",
                    &values,
                )
            },
            link: Some(&page),
        },
    )
    .await
}

/// `GET /staff/servers`: the servers waiting for verification.
pub async fn staff_list(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let servers = verification::list_unverified(&state.db, db::now()).await?;
    html(
        StatusCode::OK,
        "staff_servers.html",
        state.page(&Some(user), &csrf, ctx! { servers }),
    )
}

/// `POST /staff/servers/{id}/verify`: staff approval instead of the URL.
pub async fn staff_verify(
    State(state): State<AppState>,
    StaffUser(user): StaffUser,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    let mut tx = state.db.begin().await?;
    if !verification::mark_verified(&mut tx, id, db::now()).await? {
        return Err(AppError::NotFound);
    }
    audit::record(
        &mut tx,
        &actor(&user),
        "server.verify",
        &format!("server:{id}"),
        "staff approval",
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect("/staff/servers", Notice::Saved))
}
