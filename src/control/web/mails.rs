//! How the site writes its mails: plain text, paragraphs, absolute links
//! in the current language, and the signature (the site's name and a
//! link back) every mail ends with. And the mails that tell an account's
//! users of a change to it (a deletion scheduled or cancelled, a user
//! removed, a vendor zone submitted or decided): one to each user, in the
//! language they chose, queued in the transaction of the change
//! (`db::mail`).

use super::AppState;
use super::i18n;
use crate::control::db::{DbError, Tx, mail};

/// A page of the site as a mail links it: absolute (`--site-url`), with
/// the current language's prefix.
pub fn absolute(state: &AppState, path: &str) -> String {
    format!("{}{}", state.settings.site_url, i18n::url(path))
}

/// A mail's text: the paragraphs, a blank line between them, then the
/// signature.
pub fn body(state: &AppState, paragraphs: &[String]) -> String {
    format!(
        "{}\n\n-- \n{}\n{}\n",
        paragraphs.join("\n\n"),
        state.settings.origin,
        absolute(state, "/")
    )
}

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
    let site = &state.settings.origin;
    for (email, language) in recipients {
        let (subject, body) = i18n::in_language(language.as_deref(), || {
            let subject = format!("{site}: {}", (change.subject)());
            let mut paragraphs = vec![(change.text)()];
            paragraphs.extend(change.link.map(|link| absolute(state, link)));
            (subject, body(state, &paragraphs))
        });
        mail::enqueue(tx, email, change.kind, &subject, &body).await?;
    }
    Ok(())
}
