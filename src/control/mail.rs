//! The mail sender: takes due mails from the queue (`db::mail`) and hands
//! them to the SMTP server of `--smtp-url`, retrying with backoff. Pages
//! only queue mails, in the transaction of what the mail tells of; this
//! task is the only place that talks SMTP.
//!
//! Without `--smtp-url`, mail is off: the mails stay queued and staff
//! read them on `/staff/mail` (the demo's way of showing them).

use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::{Mailbox, Message};
use lettre::transport::smtp::client::Tls;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use crate::control::db::{self, Db, DbError, mail};

/// Mails handed to the SMTP server per pass.
const BATCH: i64 = 50;
/// How often the queue is looked at.
pub const POLL: Duration = Duration::from_secs(5);
/// How long a mail taken by one instance is left alone by the others.
const CLAIM_SECS: i64 = 300;
/// The longest wait between two attempts of one mail.
const MAX_BACKOFF_SECS: i64 = 6 * 3600;

/// What the sender needs: where to send and as whom.
pub struct Sender {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl Sender {
    /// `smtp://[user:pass@]host[:port][?tls=required]` (STARTTLS when
    /// `tls=required`) or `smtps://...` (TLS from the start); `from` as
    /// `Name <address>` or a bare address. With `ca_file` (PEM) the SMTP
    /// server's certificate is checked against that CA only (a private
    /// relay); without it, against the system's roots.
    pub fn new(
        smtp_url: &str,
        from: &str,
        ca_file: Option<&std::path::Path>,
    ) -> Result<Sender, String> {
        let from: Mailbox = from
            .parse()
            .map_err(|e| format!("--mail-from {from:?}: {e}"))?;
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::from_url(smtp_url)
            .map_err(|e| format!("--smtp-url: {e}"))?
            .timeout(Some(Duration::from_secs(30)));
        if let Some(path) = ca_file {
            builder = builder.tls(tls_with_ca(smtp_url, path)?);
        }
        Ok(Sender {
            transport: builder.build(),
            from,
        })
    }
}

/// The TLS of `smtp_url` (STARTTLS or TLS from the start) with the
/// server's certificate checked against the CA in `path` alone.
fn tls_with_ca(smtp_url: &str, path: &std::path::Path) -> Result<Tls, String> {
    use lettre::transport::smtp::client::{Certificate, CertificateStore, TlsParameters};
    let pem = std::fs::read(path).map_err(|e| format!("--smtp-ca-file {}: {e}", path.display()))?;
    let ca = Certificate::from_pem(&pem)
        .map_err(|e| format!("--smtp-ca-file {}: {e}", path.display()))?;
    let (scheme, rest) = smtp_url
        .split_once("://")
        .ok_or_else(|| format!("--smtp-url {smtp_url:?}: no scheme"))?;
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or(bracketed),
        None => host_port.split(':').next().unwrap_or(host_port),
    };
    let parameters = TlsParameters::builder(host.to_string())
        .certificate_store(CertificateStore::None)
        .add_root_certificate(ca)
        .build()
        .map_err(|e| format!("--smtp-ca-file {}: {e}", path.display()))?;
    let query = rest.split_once('?').map_or("", |(_, q)| q);
    let tls_mode = query.split('&').find_map(|p| p.strip_prefix("tls="));
    match (scheme, tls_mode) {
        ("smtps", _) => Ok(Tls::Wrapper(parameters)),
        ("smtp", Some("required")) => Ok(Tls::Required(parameters)),
        ("smtp", Some("opportunistic")) => Ok(Tls::Opportunistic(parameters)),
        _ => Err(format!(
            "--smtp-ca-file needs TLS: smtps://... or smtp://...?tls=required, not {scheme}://"
        )),
    }
}

/// Whether an SMTP error is this mail's own for good, so trying again is
/// pointless: only when the server says, by an enhanced status code
/// (RFC 3463), that the recipient's address or mailbox is refused (5.1.1
/// bad mailbox, 5.1.2 bad domain, 5.1.3 bad address syntax, 5.1.6 moved,
/// 5.1.10 null MX, 5.2.1 mailbox disabled). Every other failure, a 5xx
/// without such a code included (a 550 may mean a refused relay, a 553 a
/// From the login may not use, a 535 a wrong password), is the setup's
/// or the moment's: the mail waits, so no mail is dropped for a setup
/// error; `GIVE_UP_SECS` bounds how long.
fn refused_for_good(error: &lettre::transport::smtp::Error) -> bool {
    error.is_permanent() && recipient_refused(&error.to_string())
}

/// Whether an SMTP error's text carries an enhanced status code that
/// refuses the recipient (see `refused_for_good`).
fn recipient_refused(text: &str) -> bool {
    const RECIPIENT: [&str; 6] = ["5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1"];
    text.split(|c: char| c.is_whitespace() || c == ':' || c == ',')
        .any(|word| RECIPIENT.contains(&word))
}

/// A mail still not sent this long after it was queued is given up (as
/// mail servers give up after days), and stays on `/staff/mail` with its
/// last error.
pub const GIVE_UP_SECS: i64 = 5 * 86_400;

/// Seconds until the next attempt after `attempts` failed ones: a minute,
/// doubling, at most six hours.
pub fn backoff_secs(attempts: i64) -> i64 {
    let doublings = attempts.clamp(0, 20) as u32;
    (60i64 << doublings).min(MAX_BACKOFF_SECS)
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Pass {
    pub sent: usize,
    pub failed: usize,
}

/// Sends the mails due at `at` (a test passes a later time to skip the
/// backoff). A mail the server refuses for good (5xx, a bad address) is
/// not tried again; any other failure is, later.
pub async fn send_due(db: &Db, sender: &Sender, at: i64) -> Result<Pass, DbError> {
    let mut pass = Pass::default();
    for queued in mail::due(db, at, BATCH).await? {
        // Another instance may be sending the same queue.
        if !mail::claim(db, &queued, db::now() + CLAIM_SECS).await? {
            continue;
        }
        match send_one(sender, &queued).await {
            Ok(()) => {
                mail::mark_sent(db, queued.id).await?;
                pass.sent += 1;
            }
            Err((error, refused)) => {
                let expired = at - queued.created_at >= GIVE_UP_SECS;
                let permanent = refused || expired;
                let error = if expired && !refused {
                    format!(
                        "{error} (given up: not sent within {} days)",
                        GIVE_UP_SECS / 86_400
                    )
                } else {
                    error
                };
                tracing::warn!(id = queued.id, kind = %queued.kind, %error, permanent, "mail not sent");
                let next = db::now() + backoff_secs(queued.attempts);
                mail::mark_failed(db, queued.id, &error, next, permanent).await?;
                pass.failed += 1;
            }
        }
    }
    Ok(pass)
}

/// One mail; the error text and whether it is permanent.
async fn send_one(sender: &Sender, queued: &mail::QueuedMail) -> Result<(), (String, bool)> {
    let to: Mailbox = queued
        .recipient
        .parse()
        .map_err(|e| (format!("recipient {:?}: {e}", queued.recipient), true))?;
    let message = Message::builder()
        .from(sender.from.clone())
        .to(to)
        .subject(queued.subject.as_str())
        .header(ContentType::TEXT_PLAIN)
        .body(queued.body.clone())
        .map_err(|e| (format!("message: {e}"), true))?;
    sender
        .transport
        .send(message)
        .await
        .map(|_| ())
        .map_err(|e| (e.to_string(), refused_for_good(&e)))
}

/// The sender task of `timepool web`: a pass every `POLL` until `stop`,
/// and once an hour the old rows pruned (`mail::KEEP_SECS`).
pub async fn run(db: Db, sender: Sender, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut last_prune = 0;
    loop {
        let now = db::now();
        if now - last_prune >= 3600 {
            last_prune = now;
            match mail::prune(&db, now - mail::KEEP_SECS).await {
                Ok(0) => {}
                Ok(gone) => tracing::info!(gone, "old mails and links pruned"),
                Err(error) => tracing::warn!(%error, "cannot prune old mails"),
            }
        }
        match send_due(&db, &sender, db::now()).await {
            Ok(pass) if pass.sent + pass.failed > 0 => {
                tracing::info!(sent = pass.sent, failed = pass.failed, "mail pass");
            }
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "mail queue unreadable; trying again"),
        }
        tokio::select! {
            _ = tokio::time::sleep(POLL) => {}
            _ = stop.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_secs;

    #[test]
    fn only_a_refused_recipient_ends_a_mail() {
        for (text, refused) in [
            (
                "permanent error (550): 5.1.1 <x@example.net>: Recipient address rejected",
                true,
            ),
            ("permanent error (553): 5.1.3 bad address syntax", true),
            ("permanent error (550): 5.2.1 mailbox disabled", true),
            ("permanent error (550): 5.7.1 Relaying denied", false),
            (
                "permanent error (553): 5.7.1 Sender address rejected: not owned by user",
                false,
            ),
            (
                "permanent error (535): 5.7.8 Authentication credentials invalid",
                false,
            ),
            ("permanent error (550): mailbox unavailable", false),
            ("permanent error (550): 5.1.10 null MX", true),
            ("permanent error (550): 5.1.100 odd", false),
        ] {
            assert_eq!(super::recipient_refused(text), refused, "{text}");
        }
    }

    #[test]
    fn backoff_doubles_from_a_minute_to_six_hours() {
        assert_eq!(backoff_secs(0), 60);
        assert_eq!(backoff_secs(1), 120);
        assert_eq!(backoff_secs(5), 1920);
        assert_eq!(backoff_secs(9), 6 * 3600);
        assert_eq!(backoff_secs(1_000), 6 * 3600);
        assert_eq!(backoff_secs(-3), 60);
    }
}
