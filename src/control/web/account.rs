//! Sign-up, login, logout, and the users of an account (invites, removal).

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::{Extension, Form};
use serde::{Deserialize, Serialize};

use super::csrf::{self, CsrfToken};
use super::error::AppError;
use super::form::{
    FieldErrors, MAX_EMAIL_LEN, MAX_PASSWORD_LEN, RowId, check_email, check_new_password,
};
use super::i18n::{self, tr, trf};
use super::mails;
use super::notice::{self, Notice};
use super::session::{self, CurrentUser, LoginLimit, MaybeUser};
use super::{AppState, client_addr, html};
use crate::control::db::accounts::{self, User};
use crate::control::db::audit::{self, Actor};
use crate::control::db::{self, is_unique_violation, user_data};

pub fn actor(user: &User) -> Actor {
    Actor {
        user_id: Some(user.id),
        name: user.email.clone(),
    }
}

/// Logs the user in: a new session and its cookie (and a new CSRF
/// browser cookie: the form token rotates), then on to `to`.
async fn start_session(state: &AppState, user: &User, to: &str) -> Result<Response, AppError> {
    let secure = state.settings.secure_cookies;
    let token = accounts::create_session(&state.db, user.id).await?;
    let cookie = session::cookie_header(
        session::session_cookie_name(secure),
        &token,
        Some(accounts::SESSION_TTL_SECS),
        secure,
    );
    let mut response = Redirect::to(&i18n::url(to)).into_response();
    let value = HeaderValue::from_str(&cookie).map_err(|e| AppError::Internal(e.to_string()))?;
    response.headers_mut().append(header::SET_COOKIE, value);
    // A language chosen in this visit's URL becomes the user's; otherwise
    // the one they chose before, on any browser, becomes this browser's.
    if i18n::prefixed() {
        accounts::set_language(&state.db, user.id, i18n::current().code).await?;
    } else if let Some(code) = accounts::language_of(&state.db, user.id).await?
        && let Some(cookie) = i18n::cookie_for(&code, secure)
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    csrf::rotate(&mut response, secure);
    Ok(response)
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct SignupForm {
    pub email: String,
    #[serde(skip_serializing)]
    pub password: String,
    #[serde(skip_serializing)]
    pub password2: String,
}

pub async fn signup_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let ctx = ctx! { form => SignupForm::default(), errors => FieldErrors::default() };
    html(StatusCode::OK, "signup.html", state.page(&user, &csrf, ctx))
}

pub async fn signup(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Form(form): Form<SignupForm>,
) -> Result<Response, AppError> {
    let mut errors = FieldErrors::default();
    let email = match check_email(&form.email) {
        Ok(email) => email,
        Err(msg) => {
            errors.add("email", msg);
            String::new()
        }
    };
    check_new_password(&form.password, &form.password2, &mut errors);
    if errors.is_empty() && accounts::email_exists(&state.db, &email).await? {
        errors.add(
            "email",
            tr("There is already a login with this email address. Log in instead."),
        );
    }
    if !errors.is_empty() {
        let ctx = ctx! { form, errors };
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "signup.html",
            state.page(&user, &csrf, ctx),
        );
    }
    let hash = session::hash_password_bounded(&state, form.password.clone()).await?;
    let mut tx = state.db.begin().await?;
    let created = match accounts::create_account_with_user(&mut tx, &email, &hash, "operator").await
    {
        Ok(user) => user,
        Err(err) if is_unique_violation(&err) => {
            // Someone signed up with the same email between the check and now.
            errors.add(
                "email",
                tr("There is already a login with this email address. Log in instead."),
            );
            let ctx = ctx! { form, errors };
            return html(
                StatusCode::UNPROCESSABLE_ENTITY,
                "signup.html",
                state.page(&user, &csrf, ctx),
            );
        }
        Err(err) => return Err(err.into()),
    };
    audit::record(
        &mut tx,
        &actor(&created),
        "account.signup",
        &format!("account:{}", created.account_id),
        &email,
    )
    .await?;
    // The address is confirmed by a mailed link before servers are added.
    if let Some(token) = accounts::create_verification(&mut tx, created.id, &email).await? {
        let (subject, body) = verification_mail(&state, &email, &token);
        crate::control::db::mail::enqueue(&mut tx, &email, "verify", &subject, &body).await?;
    }
    tx.commit().await?;
    start_session(&state, &created, "/manage").await
}

/// The address confirmation mail, in the page's language; the link right
/// after the paragraph that asks to open it.
fn verification_mail(state: &AppState, email: &str, token: &str) -> (String, String) {
    let site = state.settings.origin.clone();
    let link = mails::absolute(state, &format!("/verify/{token}"));
    let subject = trf("{site}: confirm your address", &[("site", site.clone())]);
    let welcome = trf(
        "Welcome to {site}. To confirm that {email} is your address, open this link within 7 days:",
        &[("site", site), ("email", email.to_string())],
    );
    let body = mails::body(
        state,
        &[
            format!("{welcome}\n{link}"),
            tr("Until then your account cannot add servers.").to_string(),
            tr("If you did not sign up, ignore this mail.").to_string(),
        ],
    );
    (subject, body)
}

/// `/verify/{token}`: the link of the confirmation mail.
pub async fn verify(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let mut tx = state.db.begin().await?;
    let confirmed = match accounts::use_verification(&mut tx, &token).await {
        Ok(Some(confirmed)) => confirmed,
        Ok(None) => return Err(AppError::NotFound),
        Err(err) if is_unique_violation(&err) => {
            return Err(AppError::BadRequest(
                tr("Another login has this address now; nothing was changed.").into(),
            ));
        }
        Err(err) => return Err(err.into()),
    };
    let (user_id, action, details) = match confirmed {
        accounts::Confirmed::Address { user_id } => (user_id, "user.verify", String::new()),
        accounts::Confirmed::NewAddress { user_id, old, new } => {
            (user_id, "user.email.change", format!("{old} -> {new}"))
        }
    };
    audit::record(
        &mut tx,
        &audit::Actor {
            user_id: Some(user_id),
            name: format!("user:{user_id}"),
        },
        action,
        &format!("user:{user_id}"),
        &details,
    )
    .await?;
    tx.commit().await?;
    let to = if user.is_some() { "/manage" } else { "/login" };
    Ok(notice::redirect(to, Notice::EmailVerified))
}

/// Sends the confirmation mail again (at most one in five minutes).
pub async fn resend_verification(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
) -> Result<Response, AppError> {
    if user.email_verified {
        return Ok(Redirect::to(&i18n::url("/manage")).into_response());
    }
    let mut tx = state.db.begin().await?;
    if let Some(token) = accounts::create_verification(&mut tx, user.id, &user.email).await? {
        let (subject, body) = verification_mail(&state, &user.email, &token);
        crate::control::db::mail::enqueue(&mut tx, &user.email, "verify", &subject, &body).await?;
    }
    tx.commit().await?;
    Ok(notice::redirect("/manage", Notice::VerificationSent))
}

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct LoginForm {
    pub email: String,
    #[serde(skip_serializing)]
    pub password: String,
}

pub async fn login_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    let ctx = ctx! { form => LoginForm::default(), errors => FieldErrors::default() };
    html(StatusCode::OK, "login.html", state.page(&user, &csrf, ctx))
}

pub async fn login(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    connect: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    Form(form): Form<LoginForm>,
) -> Result<Response, AppError> {
    // Nothing is looked up, counted or hashed for fields no login can have.
    let mut errors = FieldErrors::default();
    if form.email.len() > MAX_EMAIL_LEN {
        errors.add("email", tr("This does not look like an email address."));
    }
    if form.password.len() > MAX_PASSWORD_LEN {
        errors.add(
            "password",
            tr("The email address or the password is wrong."),
        );
    }
    if !errors.is_empty() {
        let ctx = ctx! { form, errors };
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "login.html",
            state.page(&user, &csrf, ctx),
        );
    }
    // The client's address (from a trusted proxy's X-Forwarded-For when
    // the peer is one); absent when the router runs without connect info
    // (in-process tests).
    let peer = connect.map(|Extension(c)| c.0);
    let ip = client_addr::client_ip(peer, &headers, &state.settings.trusted_proxies);
    let email = form.email.trim().to_ascii_lowercase();
    let network = client_addr::client_network(ip);
    let limit = LoginLimit::new(&email, &network);
    let now = db::now();
    if !limit.allows(&state, now).await? {
        errors.add(
            "email",
            trf(
                "Too many failed attempts. Wait {minutes} minutes and try again.",
                &[("minutes", (LoginLimit::WINDOW_SECS / 60).to_string())],
            ),
        );
        let ctx = ctx! { form, errors };
        return html(
            StatusCode::TOO_MANY_REQUESTS,
            "login.html",
            state.page(&user, &csrf, ctx),
        );
    }
    // An email without a login costs the same check (against a dummy
    // hash), so response times do not tell which emails have one.
    let found = accounts::find_login(&state.db, &email).await?;
    let (found_user, hash) = match found {
        Some((found_user, hash)) => (Some(found_user), Some(hash)),
        None => (None, None),
    };
    let verified = session::verify_password_bounded(&state, form.password.clone(), hash).await?;
    match found_user.filter(|_| verified) {
        Some(found_user) => {
            limit.clear(&state).await?;
            // Logging in cancels a requested deletion of the login.
            let mut tx = state.db.begin().await?;
            let cancelled = user_data::cancel_deletion(&mut tx, found_user.id).await?;
            if cancelled {
                audit::record(
                    &mut tx,
                    &actor(&found_user),
                    "user.delete.cancel",
                    &format!("user:{}", found_user.id),
                    "logged in",
                )
                .await?;
            }
            tx.commit().await?;
            let to = if cancelled {
                "/manage?done=login-deletion-cancelled"
            } else {
                "/manage"
            };
            start_session(&state, &found_user, to).await
        }
        None => {
            limit.record_failure(&state, now).await?;
            // In the audit log: each failure, and the one that starts a
            // lockout (not every refused try after it: the limit bounds
            // what a guesser can write here).
            let locked = !limit.allows(&state, now).await?;
            let mut tx = state.db.begin().await?;
            let who = Actor {
                user_id: None,
                name: email.clone(),
            };
            let target = format!("login:{email}");
            let details = format!("from {network}");
            audit::record(&mut tx, &who, "login.failed", &target, &details).await?;
            if locked {
                let details = format!(
                    "from {network}; logins refused for {} minutes",
                    LoginLimit::WINDOW_SECS / 60
                );
                audit::record(&mut tx, &who, "login.lockout", &target, &details).await?;
            }
            tx.commit().await?;
            errors.add(
                "password",
                tr("The email address or the password is wrong."),
            );
            let ctx = ctx! { form, errors };
            html(
                StatusCode::UNAUTHORIZED,
                "login.html",
                state.page(&user, &csrf, ctx),
            )
        }
    }
}

pub async fn logout(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> Result<Response, AppError> {
    let secure = state.settings.secure_cookies;
    let name = session::session_cookie_name(secure);
    if let Some(token) = session::cookie_value(&headers, name) {
        accounts::delete_session(&state.db, &token).await?;
    }
    let expired = session::cookie_header(name, "", Some(0), secure);
    let mut response = Redirect::to(&i18n::url("/")).into_response();
    let value = HeaderValue::from_str(&expired).map_err(|e| AppError::Internal(e.to_string()))?;
    response.headers_mut().append(header::SET_COOKIE, value);
    csrf::rotate(&mut response, secure);
    Ok(response)
}

// ---- Users of an account -------------------------------------------------

#[derive(Deserialize, Serialize, Default)]
#[serde(default)]
pub struct InviteForm {
    pub email: String,
}

async fn users_page(
    state: &AppState,
    user: &User,
    csrf: &CsrfToken,
    status: StatusCode,
    form: InviteForm,
    errors: FieldErrors,
    invited: Option<String>,
) -> Result<Response, AppError> {
    let users = accounts::list_users(&state.db, user.account_id).await?;
    let invites = accounts::list_invites(&state.db, user.account_id).await?;
    let ctx = ctx! { users, invites, form, errors, invited, now => db::now() };
    html(
        status,
        "users.html",
        state.page(&Some(user.clone()), csrf, ctx),
    )
}

pub async fn users(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    users_page(
        &state,
        &user,
        &csrf,
        StatusCode::OK,
        InviteForm::default(),
        FieldErrors::default(),
        None,
    )
    .await
}

pub async fn invite_create(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    Form(form): Form<InviteForm>,
) -> Result<Response, AppError> {
    if !user.is_owner() {
        return Err(AppError::OwnersOnly);
    }
    let mut errors = FieldErrors::default();
    let email = match check_email(&form.email) {
        Ok(email) => email,
        Err(msg) => {
            errors.add("email", msg);
            String::new()
        }
    };
    // A login removed from its account may be invited again; one in an
    // account may not (one login belongs to one account).
    if errors.is_empty()
        && accounts::find_by_email(&state.db, &email)
            .await?
            .is_some_and(|u| u.in_account)
    {
        errors.add(
            "email",
            tr("This address already has a login; one login belongs to one account."),
        );
    }
    if !errors.is_empty() {
        return users_page(
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
    let recipients = accounts::mail_recipients(&state.db, user.account_id).await?;
    let mut tx = state.db.begin().await?;
    lock_as_owner(&mut tx, &state, &user).await?;
    let token = accounts::create_invite(&mut tx, user.account_id, &email, user.id).await?;
    let values = [("actor", user.email.clone()), ("email", email.clone())];
    mails::tell(
        &mut tx,
        &state,
        &recipients,
        &mails::Change {
            kind: "user_invited",
            subject: &|| trf("{email} is invited to the account", &values[1..]),
            text: &|| {
                trf(
                    "{actor} invited {email} to the account, as a member. The invitation can be withdrawn on the users page:",
                    &values,
                )
            },
            link: Some("/manage/users"),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "invite.create",
        &format!("account:{}", user.account_id),
        &email,
    )
    .await?;
    // The link goes to the invited address only (only its hash is
    // stored), in the same transaction as the invitation.
    let (subject, body) = invite_mail(&state, &user.email, &token);
    crate::control::db::mail::enqueue(&mut tx, &email, "invite", &subject, &body).await?;
    tx.commit().await?;
    users_page(
        &state,
        &user,
        &csrf,
        StatusCode::OK,
        InviteForm::default(),
        FieldErrors::default(),
        Some(email),
    )
    .await
}

/// The invitation mail, in the inviter's language.
fn invite_mail(state: &AppState, inviter: &str, token: &str) -> (String, String) {
    let site = state.settings.origin.clone();
    let link = mails::absolute(state, &format!("/invite/{token}"));
    let subject = trf(
        "{site}: an invitation to run NTP servers with {inviter}",
        &[("site", site.clone()), ("inviter", inviter.to_string())],
    );
    let body = mails::body(
        state,
        &[
            trf(
                "{inviter} invites you to their account on {site}, where its users run NTP servers of the pool together.",
                &[("inviter", inviter.to_string()), ("site", site)],
            ),
            format!(
                "{}\n{link}",
                tr("To accept, open this link within 7 days. It works once:")
            ),
            trf(
                "If you do not know {inviter}, ignore this mail.",
                &[("inviter", inviter.to_string())],
            ),
        ],
    );
    (subject, body)
}

pub async fn invite_revoke(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RowId(id): RowId,
) -> Result<Response, AppError> {
    if !user.is_owner() {
        return Err(AppError::OwnersOnly);
    }
    let mut tx = state.db.begin().await?;
    lock_as_owner(&mut tx, &state, &user).await?;
    if !accounts::revoke_invite(&mut tx, user.account_id, id).await? {
        return Err(AppError::NotFound);
    }
    audit::record(
        &mut tx,
        &actor(&user),
        "invite.revoke",
        &format!("invite:{id}"),
        "",
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect("/manage/users", Notice::InviteWithdrawn))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RemoveForm {
    /// "yes" from the confirmation page; without it, that page is shown.
    pub confirm: String,
}

/// Locks the account's users for a change and reads them again; the actor
/// must still be an owner then (a role taken away meanwhile counts).
async fn lock_as_owner(
    tx: &mut db::Tx,
    state: &AppState,
    user: &User,
) -> Result<Vec<(i64, String, String)>, AppError> {
    accounts::lock_account(tx, state.db.engine, user.account_id).await?;
    let users = accounts::users_in(tx, user.account_id).await?;
    let still_owner = users
        .iter()
        .any(|(id, _, role)| *id == user.id && role == accounts::OWNER);
    if !still_owner {
        return Err(AppError::OwnersOnly);
    }
    Ok(users)
}

/// Removes a user from the account (owners only), or, for the user
/// themselves, leaves it. The last owner can do neither; every user of the
/// account (the one leaving or removed too) is told.
pub async fn user_remove(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    csrf: CsrfToken,
    RowId(id): RowId,
    Form(form): Form<RemoveForm>,
) -> Result<Response, AppError> {
    let leaving = id == user.id;
    if !leaving && !user.is_owner() {
        return Err(AppError::OwnersOnly);
    }
    if form.confirm != "yes" {
        let users = accounts::list_users(&state.db, user.account_id).await?;
        let removed = users
            .into_iter()
            .find(|u| u.id == id)
            .ok_or(AppError::NotFound)?;
        return html(
            StatusCode::OK,
            "user_remove.html",
            state.page(&Some(user), &csrf, ctx! { removed, leaving }),
        );
    }
    let recipients = accounts::mail_recipients(&state.db, user.account_id).await?;
    let mut tx = state.db.begin().await?;
    let users = if leaving {
        accounts::lock_account(&mut tx, state.db.engine, user.account_id).await?;
        accounts::users_in(&mut tx, user.account_id).await?
    } else {
        lock_as_owner(&mut tx, &state, &user).await?
    };
    let (_, removed_email, removed_role) = users
        .iter()
        .find(|(uid, _, _)| *uid == id)
        .cloned()
        .ok_or(AppError::NotFound)?;
    let owners = users
        .iter()
        .filter(|(_, _, r)| r == accounts::OWNER)
        .count();
    if removed_role == accounts::OWNER && owners <= 1 {
        return Err(AppError::Conflict(
            tr("The last owner of an account can neither be removed nor leave it: make another user an owner first.").to_string(),
        ));
    }
    // A user who leaves keeps their session (it now shows that they are in
    // no account); a removed user's sessions end.
    if !accounts::remove_user(&mut tx, user.account_id, id, !leaving).await? {
        return Err(AppError::NotFound);
    }
    let values = [
        ("actor", user.email.clone()),
        ("email", removed_email.clone()),
    ];
    let subject = || {
        if leaving {
            trf("{email} left the account", &values[1..])
        } else {
            trf("{email} is no longer a user of the account", &values[1..])
        }
    };
    let text = || {
        if leaving {
            trf(
                "{email} left the account. They can still log in, but see none of its servers or settings.",
                &values[1..],
            )
        } else {
            trf(
                "{actor} removed {email} from the account. {email} can still log in, but sees none of its servers or settings.",
                &values,
            )
        }
    };
    mails::tell(
        &mut tx,
        &state,
        &recipients,
        &mails::Change {
            kind: if leaving { "user_left" } else { "user_removed" },
            subject: &subject,
            text: &text,
            link: Some("/manage/users"),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &actor(&user),
        if leaving { "user.leave" } else { "user.remove" },
        &format!("user:{id}"),
        "",
    )
    .await?;
    tx.commit().await?;
    if leaving {
        return Ok(Redirect::to(&i18n::url("/manage/no-account")).into_response());
    }
    Ok(notice::redirect("/manage/users", Notice::UserRemoved))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct RoleForm {
    /// "owner" or "member".
    pub role: String,
}

/// An owner makes a user of the account an owner or a member; the last
/// owner stays one. Every user of the account is told.
pub async fn user_role(
    State(state): State<AppState>,
    CurrentUser(user): CurrentUser,
    RowId(id): RowId,
    Form(form): Form<RoleForm>,
) -> Result<Response, AppError> {
    if !user.is_owner() {
        return Err(AppError::OwnersOnly);
    }
    let role = match form.role.as_str() {
        r if r == accounts::OWNER => accounts::OWNER,
        r if r == accounts::MEMBER => accounts::MEMBER,
        _ => {
            return Err(AppError::BadRequest(
                tr("A user is an owner or a member.").to_string(),
            ));
        }
    };
    let recipients = accounts::mail_recipients(&state.db, user.account_id).await?;
    let mut tx = state.db.begin().await?;
    let users = lock_as_owner(&mut tx, &state, &user).await?;
    let (_, email, old_role) = users
        .iter()
        .find(|(uid, _, _)| *uid == id)
        .cloned()
        .ok_or(AppError::NotFound)?;
    if old_role == role {
        return Ok(notice::redirect("/manage/users", Notice::Saved));
    }
    let owners = users
        .iter()
        .filter(|(_, _, r)| r == accounts::OWNER)
        .count();
    if old_role == accounts::OWNER && owners <= 1 {
        return Err(AppError::Conflict(
            tr("The last owner of an account stays an owner: make another user an owner first.")
                .to_string(),
        ));
    }
    accounts::set_account_role(&mut tx, user.account_id, id, role).await?;
    let values = [("actor", user.email.clone()), ("email", email)];
    let text = || {
        if role == accounts::OWNER {
            trf(
                "{actor} made {email} an owner of the account: owners invite and remove users and change their roles.",
                &values,
            )
        } else {
            trf(
                "{actor} made {email} a member of the account: members look after its servers, but do not invite or remove users.",
                &values,
            )
        }
    };
    mails::tell(
        &mut tx,
        &state,
        &recipients,
        &mails::Change {
            kind: "user_role",
            subject: &|| trf("{email} has a new role in the account", &values[1..]),
            text: &text,
            link: Some("/manage/users"),
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &actor(&user),
        "user.role",
        &format!("user:{id}"),
        role,
    )
    .await?;
    tx.commit().await?;
    Ok(notice::redirect("/manage/users", Notice::Saved))
}

#[derive(Deserialize, Default)]
#[serde(default)]
pub struct AcceptForm {
    pub password: String,
    pub password2: String,
}

pub async fn invite_form(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Path(token): Path<String>,
) -> Result<Response, AppError> {
    let invite = accounts::find_open_invite(&state.db, &token)
        .await?
        .ok_or(AppError::NotFound)?;
    let existing = accounts::find_by_email(&state.db, &invite.email)
        .await?
        .is_some();
    let ctx = ctx! { invite, token, existing, errors => FieldErrors::default() };
    html(StatusCode::OK, "invite.html", state.page(&user, &csrf, ctx))
}

pub async fn invite_accept(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
    Path(token): Path<String>,
    Form(form): Form<AcceptForm>,
) -> Result<Response, AppError> {
    let invite = accounts::find_open_invite(&state.db, &token)
        .await?
        .ok_or(AppError::NotFound)?;
    let mut errors = FieldErrors::default();
    // An invited email that has a login (a user removed from an account):
    // its owner proves it with their password, which stays as it is.
    let existing = accounts::find_login(&state.db, &invite.email).await?;
    if let Some((existing_user, hash)) = existing {
        if existing_user.in_account {
            errors.add("password", tr("This email address already has a login."));
        } else if form.password.len() > MAX_PASSWORD_LEN
            || !session::verify_password_bounded(&state, form.password.clone(), Some(hash)).await?
        {
            errors.add("password", tr("The password is wrong."));
        }
        if errors.is_empty() {
            let mut tx = state.db.begin().await?;
            if !accounts::use_invite(&mut tx, invite.id).await?
                || !accounts::join_account(
                    &mut tx,
                    existing_user.id,
                    invite.account_id,
                    accounts::MEMBER,
                )
                .await?
            {
                return Err(AppError::NotFound);
            }
            // The invitation came by mail to this address.
            accounts::mark_verified(&mut tx, existing_user.id).await?;
            audit::record(
                &mut tx,
                &actor(&existing_user),
                "invite.accept",
                &format!("invite:{}", invite.id),
                &invite.email,
            )
            .await?;
            tx.commit().await?;
            let joined = accounts::User {
                account_id: invite.account_id,
                in_account: true,
                ..existing_user
            };
            return start_session(&state, &joined, "/manage").await;
        }
        let ctx = ctx! { invite, token, errors, existing => true };
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invite.html",
            state.page(&user, &csrf, ctx),
        );
    }
    check_new_password(&form.password, &form.password2, &mut errors);
    if !errors.is_empty() {
        let ctx = ctx! { invite, token, errors, existing => false };
        return html(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invite.html",
            state.page(&user, &csrf, ctx),
        );
    }
    let hash = session::hash_password_bounded(&state, form.password.clone()).await?;
    let mut tx = state.db.begin().await?;
    if !accounts::use_invite(&mut tx, invite.id).await? {
        return Err(AppError::NotFound);
    }
    let mut created = accounts::insert_user(
        &mut tx,
        invite.account_id,
        &invite.email,
        &hash,
        "operator",
        accounts::MEMBER,
    )
    .await?;
    // The invitation came by mail to this address.
    accounts::mark_verified(&mut tx, created.id).await?;
    created.email_verified = true;
    audit::record(
        &mut tx,
        &actor(&created),
        "invite.accept",
        &format!("invite:{}", invite.id),
        &invite.email,
    )
    .await?;
    tx.commit().await?;
    start_session(&state, &created, "/manage").await
}

/// What a user removed from their account sees instead of its pages.
pub async fn no_account(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    csrf: CsrfToken,
) -> Result<Response, AppError> {
    match &user {
        None => Err(AppError::LoginRequired),
        Some(u) if u.in_account => Ok(Redirect::to(&i18n::url("/manage")).into_response()),
        Some(_) => html(
            StatusCode::OK,
            "no_account.html",
            state.page(&user, &csrf, ctx! {}),
        ),
    }
}

/// A user in no account starts one of their own.
pub async fn start_account(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
) -> Result<Response, AppError> {
    let user = user.ok_or(AppError::LoginRequired)?;
    if user.in_account {
        return Ok(Redirect::to(&i18n::url("/manage")).into_response());
    }
    let mut tx = state.db.begin().await?;
    let account_id = accounts::insert_account(&mut tx, &user.email).await?;
    if !accounts::join_account(&mut tx, user.id, account_id, accounts::OWNER).await? {
        // Invited into one meanwhile: nothing to start.
        return Ok(Redirect::to(&i18n::url("/manage")).into_response());
    }
    audit::record(
        &mut tx,
        &actor(&user),
        "account.create",
        &format!("account:{account_id}"),
        &user.email,
    )
    .await?;
    tx.commit().await?;
    Ok(Redirect::to(&i18n::url("/manage")).into_response())
}
