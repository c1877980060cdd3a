//! The monitor protocol (web/README.md, "The monitor protocol"), the one
//! definition both sides use: the results document, which the agent
//! (`monitor::agent`) serializes and the ingest API
//! (`control::web::ingest`) deserializes and then validates, and the error
//! texts of a result, which the agent's NTP check writes and the control
//! plane's scoring reads.

use serde::{Deserialize, Serialize};

/// `POST /api/v1/monitor/results`: one batch's results.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ResultsDocument {
    pub batch_id: i64,
    pub results: Vec<CheckResult>,
}

/// One check of one server. Absent optional fields read as null.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct CheckResult {
    pub server: String,
    pub ts: i64,
    #[serde(default)]
    pub offset: Option<f64>,
    #[serde(default)]
    pub rtt: Option<f64>,
    #[serde(default)]
    pub stratum: Option<i64>,
    #[serde(default)]
    pub leap: Option<i64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// `POST /api/v1/monitor/self-check`: the agent's measurement of its own
/// clock against its reference NTP servers, sent before each batch's
/// results (and while its clock is off, instead of them).
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct SelfCheckReport {
    /// Whether the clock is within the agent's limit.
    pub ok: bool,
    /// The median offset of the references that answered, in seconds
    /// (positive: the references are ahead of this monitor's clock).
    #[serde(default)]
    pub offset: Option<f64>,
    /// The limit the agent applied, in seconds.
    pub max_offset: f64,
    /// Each reference's answer.
    pub references: Vec<ReferenceResult>,
}

/// One reference server's answer to the self-check.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields)]
pub struct ReferenceResult {
    pub server: String,
    #[serde(default)]
    pub offset: Option<f64>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The error text of a check that got no reply.
pub const ERROR_TIMEOUT: &str = "timeout";

/// The error text of a Kiss-o'-Death reply starts with this, then the
/// four-letter code ("kod:RATE").
const KOD_PREFIX: &str = "kod:";

/// The error text of a Kiss-o'-Death reply with this code.
pub fn kod_error(code: &str) -> String {
    format!("{KOD_PREFIX}{code}")
}

/// What a result's error text says, as scoring tells errors apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportedError<'a> {
    /// No reply ([`ERROR_TIMEOUT`]).
    Timeout,
    /// A Kiss-o'-Death reply with this code ("RATE", "DENY", "RSTR", ...).
    Kod(&'a str),
    /// Anything else: free text (a stratum above 10, a socket error).
    Other(&'a str),
}

impl<'a> ReportedError<'a> {
    pub fn parse(text: &'a str) -> ReportedError<'a> {
        if text == ERROR_TIMEOUT {
            ReportedError::Timeout
        } else if let Some(code) = text.strip_prefix(KOD_PREFIX) {
            ReportedError::Kod(code)
        } else {
            ReportedError::Other(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_texts_round_trip() {
        assert_eq!(ReportedError::parse(ERROR_TIMEOUT), ReportedError::Timeout);
        assert_eq!(
            ReportedError::parse(&kod_error("RATE")),
            ReportedError::Kod("RATE")
        );
        assert_eq!(
            ReportedError::parse("stratum 16 above 10"),
            ReportedError::Other("stratum 16 above 10")
        );
    }
}
