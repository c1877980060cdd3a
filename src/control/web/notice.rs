//! The one-line notice a page shows after an action ("Saved."). The
//! action redirects to its page with `?done=NAME`; only the names of
//! [`Notice`] mean anything, so a page never shows text a link brought.
//! The templates hold the messages (base.html, and server.html for the
//! deletion date), so the catalogue check sees them.

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use super::i18n;

/// What was just done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    Saved,
    DeletionScheduled,
    DeletionCancelled,
    VendorApplied,
    UserRemoved,
    InviteWithdrawn,
    PasswordChanged,
    EmailVerified,
    VerificationSent,
    LoginDeletionRequested,
    LoginDeletionCancelled,
    CheckRequested,
    CheckTooSoon,
    CheckLimit,
}

impl Notice {
    const ALL: [Notice; 14] = [
        Notice::Saved,
        Notice::DeletionScheduled,
        Notice::DeletionCancelled,
        Notice::VendorApplied,
        Notice::UserRemoved,
        Notice::InviteWithdrawn,
        Notice::PasswordChanged,
        Notice::EmailVerified,
        Notice::VerificationSent,
        Notice::LoginDeletionRequested,
        Notice::LoginDeletionCancelled,
        Notice::CheckRequested,
        Notice::CheckTooSoon,
        Notice::CheckLimit,
    ];

    /// The name in the URL and in the templates.
    pub fn name(self) -> &'static str {
        match self {
            Notice::Saved => "saved",
            Notice::DeletionScheduled => "deletion-scheduled",
            Notice::DeletionCancelled => "deletion-cancelled",
            Notice::VendorApplied => "vendor-applied",
            Notice::UserRemoved => "user-removed",
            Notice::InviteWithdrawn => "invite-withdrawn",
            Notice::PasswordChanged => "password-changed",
            Notice::EmailVerified => "email-verified",
            Notice::VerificationSent => "verification-sent",
            Notice::LoginDeletionRequested => "login-deletion-requested",
            Notice::LoginDeletionCancelled => "login-deletion-cancelled",
            Notice::CheckRequested => "check-requested",
            Notice::CheckTooSoon => "check-too-soon",
            Notice::CheckLimit => "check-limit",
        }
    }

    fn from_query(query: &str) -> Option<Notice> {
        let value = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("done="))?;
        Notice::ALL.into_iter().find(|n| n.name() == value)
    }
}

/// The redirect after an action: its page in the request's language, with
/// the notice.
pub fn redirect(path: &str, notice: Notice) -> Response {
    Redirect::to(&format!("{}?done={}", i18n::url(path), notice.name())).into_response()
}

tokio::task_local! {
    static CURRENT: Option<Notice>;
}

/// The notice of this request, for the templates' `action_notice()`.
pub fn current() -> Option<&'static str> {
    CURRENT.try_with(|n| n.map(Notice::name)).ok().flatten()
}

/// Reads `done=` of a GET request for the page it renders.
pub async fn read(req: Request, next: Next) -> Response {
    let notice = (req.method() == axum::http::Method::GET)
        .then(|| req.uri().query().and_then(Notice::from_query))
        .flatten();
    CURRENT.scope(notice, next.run(req)).await
}

#[cfg(test)]
mod tests {
    use super::Notice;

    #[test]
    fn only_known_names_are_notices() {
        assert_eq!(Notice::from_query("done=saved"), Some(Notice::Saved));
        assert_eq!(
            Notice::from_query("x=1&done=user-removed"),
            Some(Notice::UserRemoved)
        );
        for query in ["done=<b>hi</b>", "done=", "notdone=saved", ""] {
            assert_eq!(Notice::from_query(query), None, "{query}");
        }
        for notice in Notice::ALL {
            assert_eq!(
                Notice::from_query(&format!("done={}", notice.name())),
                Some(notice)
            );
        }
    }
}
