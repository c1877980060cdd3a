//! The mails that tell an account's users of a change to it (a deletion
//! scheduled or cancelled, a user removed, a vendor zone submitted or
//! decided): one to each user, in the language they chose, queued in the
//! transaction of the change (`db::mail`).

use super::AppState;
use super::i18n;
use crate::control::db::{DbError, Tx, mail};

/// The addresses to tell and the language of each.
pub type Recipients = Vec<(String, Option<String>)>;

/// What changed, for the subject and the first paragraph; `link` is a
/// page of the site to see it (`/manage/servers/7`).
pub struct Change<'a> {
    pub kind: &'a str,
    pub subject: &'a (dyn Fn() -> String + Sync),
    pub text: &'a (dyn Fn() -> String + Sync),
    pub link: Option<&'a str>,
}

/// Queues the mail of `change` to every recipient.
pub async fn tell(
    tx: &mut Tx,
    state: &AppState,
    recipients: &Recipients,
    change: &Change<'_>,
) -> Result<(), DbError> {
    let base = &state.settings.site_url;
    let site = &state.settings.origin;
    for (email, language) in recipients {
        let (subject, body) = i18n::in_language(language.as_deref(), || {
            let subject = format!("{site}: {}", (change.subject)());
            let mut body = (change.text)();
            if let Some(link) = change.link {
                body.push_str(&format!("\n\n{}{}", base, i18n::url(link)));
            }
            body.push_str(&format!("\n\n-- \n{site}\n{base}{}\n", i18n::url("/")));
            (subject, body)
        });
        mail::enqueue(tx, email, change.kind, &subject, &body).await?;
    }
    Ok(())
}
