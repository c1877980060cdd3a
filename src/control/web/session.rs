//! Logins: password hashing (on the bounded hasher, `web::hashing`),
//! session cookies, who is asking, and the login rate limit.

use std::cell::RefCell;

use argon2::password_hash::phc::{Output, ParamsString, PasswordHash, Salt};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::HeaderMap;
use axum::http::request::Parts;

use super::AppState;
use super::error::AppError;
use crate::control::db::accounts::{self, User};
use crate::control::db::{DbError, login_failures};

pub const COOKIE: &str = "tp_session";
const SECURE_COOKIE: &str = "__Host-tp_session";

/// The session cookie's name: `__Host-` over HTTPS (Secure, host-only,
/// path /: a sibling domain or plain HTTP cannot set or shadow it).
pub fn session_cookie_name(secure: bool) -> &'static str {
    if secure { SECURE_COOKIE } else { COOKIE }
}

/// Runs argon2 with this thread's working memory, kept and reused. The
/// crate's own calls allocate 19 MiB per hash; freed, glibc keeps several
/// of those blocks resident (measured: 200 MiB peak RSS under a burst of
/// logins with two hashing threads, against 70 MiB with reused memory).
fn with_memory<T>(params: &Params, hash: impl FnOnce(&mut [Block]) -> T) -> T {
    thread_local! {
        static MEMORY: RefCell<Vec<Block>> = const { RefCell::new(Vec::new()) };
    }
    MEMORY.with(|memory| {
        let mut memory = memory.borrow_mut();
        memory.resize(params.block_count(), Block::default());
        hash(&mut memory)
    })
}

/// argon2id with the crate's defaults (19 MiB, 2 passes: OWASP's
/// minimum), 16 bytes of salt, as a PHC string.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    let fail = |e: &dyn std::fmt::Display| AppError::Internal(format!("argon2: {e}"));
    let params = Params::default();
    let mut salt = [0u8; 16];
    rand::fill(&mut salt[..]);
    let mut out = [0u8; Params::DEFAULT_OUTPUT_LEN];
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.clone());
    with_memory(&params, |memory| {
        argon2.hash_password_into_with_memory(password.as_bytes(), &salt, &mut out, memory)
    })
    .map_err(|e| fail(&e))?;
    let phc = PasswordHash {
        algorithm: Algorithm::Argon2id.ident(),
        version: Some(Version::V0x13.into()),
        params: ParamsString::try_from(&params).map_err(|e| fail(&e))?,
        salt: Some(Salt::new(&salt).map_err(|e| fail(&e))?),
        hash: Some(Output::new(&out).map_err(|e| fail(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a PHC string (any argon2 variant and
/// parameters it names); the comparison is constant-time.
pub fn verify_password(password: &str, hash: &str) -> bool {
    let Ok(phc) = PasswordHash::new(hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params), Some(salt), Some(expected)) = (
        Algorithm::try_from(phc.algorithm.as_str()),
        Params::try_from(&phc),
        phc.salt.as_ref(),
        phc.hash.as_ref(),
    ) else {
        return false;
    };
    let Ok(version) = phc.version.map_or(Ok(Version::V0x13), Version::try_from) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let argon2 = Argon2::new(algorithm, version, params.clone());
    let computed = with_memory(&params, |memory| {
        argon2.hash_password_into_with_memory(password.as_bytes(), salt, &mut out, memory)
    });
    computed.is_ok() && Output::new(&out).is_ok_and(|out| out == *expected)
}

/// A valid argon2id hash of a random password, for checking against when an
/// email has no login (see `account::login`).
pub fn dummy_hash() -> String {
    static DUMMY: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        hash_password(&crate::control::db::new_token()).unwrap_or_default()
    });
    DUMMY.clone()
}

/// Hashing costs ~50 ms and ~19 MiB: run it on the bounded hasher; a
/// full queue is a 503 at once.
pub async fn hash_password_bounded(state: &AppState, password: String) -> Result<String, AppError> {
    state
        .hasher
        .run(move || hash_password(&password))
        .await
        .map_err(|_| AppError::Busy)?
}

/// Checks a password on the bounded hasher; `None` for the dummy check
/// of an email without a login.
pub async fn verify_password_bounded(
    state: &AppState,
    password: String,
    hash: Option<String>,
) -> Result<bool, AppError> {
    state
        .hasher
        .run(move || verify_password(&password, &hash.unwrap_or_else(dummy_hash)))
        .await
        .map_err(|_| AppError::Busy)
}

/// The value of one cookie from the request headers.
pub fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_string())
}

/// A Set-Cookie value: HttpOnly, SameSite=Lax, whole site; `Secure` when the
/// instance is served over HTTPS (setting `secure_cookies`).
pub fn cookie_header(name: &str, value: &str, max_age: Option<i64>, secure: bool) -> String {
    let mut cookie = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
    if let Some(age) = max_age {
        cookie.push_str(&format!("; Max-Age={age}"));
    }
    if secure {
        cookie.push_str("; Secure");
    }
    cookie
}

/// The visitor, logged in or not.
pub struct MaybeUser(pub Option<User>);

/// A logged-in user (operator or staff) of an account; others are sent to
/// /login, and a user removed from their account to the page that says so.
pub struct CurrentUser(pub User);

/// A logged-in staff user; operators get 403.
pub struct StaffUser(pub User);

/// A logged-in user, in an account or not (a removed user still has their
/// own data and login to look after); others are sent to /login.
pub struct LoggedIn(pub User);

impl FromRequestParts<AppState> for MaybeUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if let Some(user) = parts.extensions.get::<User>() {
            return Ok(MaybeUser(Some(user.clone())));
        }
        let name = session_cookie_name(state.settings.secure_cookies);
        let Some(token) = cookie_value(&parts.headers, name) else {
            return Ok(MaybeUser(None));
        };
        let user = accounts::session_user(&state.db, &token).await?;
        if let Some(user) = &user {
            parts.extensions.insert(user.clone());
        }
        Ok(MaybeUser(user))
    }
}

impl FromRequestParts<AppState> for CurrentUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match MaybeUser::from_request_parts(parts, state).await? {
            MaybeUser(Some(user)) if user.in_account => Ok(CurrentUser(user)),
            MaybeUser(Some(_)) => Err(AppError::NoAccount),
            MaybeUser(None) => Err(AppError::LoginRequired),
        }
    }
}

impl FromRequestParts<AppState> for LoggedIn {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        match MaybeUser::from_request_parts(parts, state).await? {
            MaybeUser(Some(user)) => Ok(LoggedIn(user)),
            MaybeUser(None) => Err(AppError::LoginRequired),
        }
    }
}

impl FromRequestParts<AppState> for StaffUser {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let CurrentUser(user) = CurrentUser::from_request_parts(parts, state).await?;
        if user.is_staff() {
            Ok(StaffUser(user))
        } else {
            Err(AppError::Forbidden)
        }
    }
}

/// The login limit (web/README.md): failed logins counted per email
/// and client network together, per client network and per email, within
/// `WINDOW_SECS`. In the database, so it holds on every instance.
pub struct LoginLimit {
    /// Hashed keys: (email, network), network, email.
    keys: [String; 3],
}

impl LoginLimit {
    pub const WINDOW_SECS: i64 = 15 * 60;
    /// Failures allowed for one email from one network: a person
    /// mistyping.
    pub const PER_EMAIL_AND_NETWORK: i64 = 5;
    /// From one network over all emails: one place trying many accounts.
    pub const PER_NETWORK: i64 = 30;
    /// For one email from everywhere: a spread-out guess at one account
    /// (high enough that locking someone out takes several networks).
    pub const PER_EMAIL: i64 = 50;

    /// `network` from `client_addr::client_network` (a /24 or /56).
    pub fn new(email: &str, network: &str) -> LoginLimit {
        LoginLimit {
            keys: [
                login_failures::key_hash(&format!("pair\n{email}\n{network}")),
                login_failures::key_hash(&format!("network\n{network}")),
                login_failures::key_hash(&format!("email\n{email}")),
            ],
        }
    }

    /// True when another attempt is allowed now.
    pub async fn allows(&self, state: &AppState, now: i64) -> Result<bool, DbError> {
        let since = now - Self::WINDOW_SECS + 1;
        let limits = [
            Self::PER_EMAIL_AND_NETWORK,
            Self::PER_NETWORK,
            Self::PER_EMAIL,
        ];
        for (key, limit) in self.keys.iter().zip(limits) {
            if login_failures::count_since(&state.db, key, since).await? >= limit {
                return Ok(false);
            }
        }
        Ok(true)
    }

    pub async fn record_failure(&self, state: &AppState, now: i64) -> Result<(), DbError> {
        login_failures::record(&state.db, &self.keys, now, now - Self::WINDOW_SECS).await
    }

    /// A successful login forgives its (email, network) failures.
    pub async fn clear(&self, state: &AppState) -> Result<(), DbError> {
        login_failures::clear(&state.db, &self.keys[0]).await
    }
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::{PasswordHasher, PasswordVerifier};

    use super::*;

    #[test]
    fn hashes_are_the_crates_phc_strings_both_ways() {
        let ours = hash_password("correct horse battery").unwrap();
        assert!(
            ours.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{ours}"
        );
        assert!(verify_password("correct horse battery", &ours));
        assert!(!verify_password("correct horse batterY", &ours));
        assert!(
            Argon2::default()
                .verify_password(b"correct horse battery", ours.as_str())
                .is_ok()
        );
        // A hash made by the crate's own call (an older timepool) checks.
        let theirs = Argon2::default()
            .hash_password(b"an older password")
            .unwrap()
            .to_string();
        assert!(verify_password("an older password", &theirs));
        assert!(!verify_password("another", &theirs));
        assert!(!verify_password("x", "not a hash"));
    }
}
