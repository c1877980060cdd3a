//! The monitor protocol (web/README.md, "The monitor protocol"), the one
//! definition both sides use: the results document, which the agent
//! (`monitor::agent`) serializes and the ingest API
//! (`control::web::ingest`) parses and validates here, the self-check
//! report likewise, and the error
//! texts of a result, which the agent's NTP check writes and the control
//! plane's scoring reads.

use std::collections::HashSet;
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

/// Most servers in one batch, so most results in one document.
pub const MAX_BATCH: usize = 500;

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

/// One result as the ingest accepts it: shape checked, the address in
/// canonical text (as stored in `servers.address`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResultIn {
    pub server: String,
    pub ts: i64,
    pub offset: Option<f64>,
    pub rtt: Option<f64>,
    pub stratum: Option<i64>,
    pub leap: Option<i64>,
    pub error: Option<String>,
}

/// Parses a results document (at most [`MAX_RESULTS_BODY`] bytes, which
/// the caller bounds) and checks every result's shape: the batch id and
/// the results, or a message naming the first field at fault.
pub fn parse_results(body: &[u8]) -> Result<(i64, Vec<ResultIn>), String> {
    let parsed: ResultsDocument =
        serde_json::from_slice(body).map_err(|e| format!("invalid results document: {e}"))?;
    validate(parsed)
}

/// Longest error text kept.
pub const MAX_ERROR_LEN: usize = 200;

/// Largest results document accepted: a full batch of results, each with
/// the longest error text written entirely in `\uXXXX` escapes, and room
/// for the other fields and spacing.
pub const MAX_RESULTS_BODY: usize = MAX_BATCH * (MAX_ERROR_LEN * 6 + 400) + 4096;

/// Checks every result's shape; the first problem is the message.
fn validate(body: ResultsDocument) -> Result<(i64, Vec<ResultIn>), String> {
    if body.results.len() > MAX_BATCH {
        return Err(format!(
            "results: at most {MAX_BATCH} per batch, got {}",
            body.results.len()
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(body.results.len());
    for (i, r) in body.results.into_iter().enumerate() {
        let field = |name: &str| format!("results[{i}].{name}");
        let address: IpAddr = r
            .server
            .parse()
            .map_err(|_| format!("{}: {:?} is not an IP address", field("server"), r.server))?;
        let server = address.to_string();
        if !seen.insert(server.clone()) {
            return Err(format!(
                "{}: {server} appears more than once",
                field("server")
            ));
        }
        if r.ts <= 0 {
            return Err(format!(
                "{}: must be unix seconds, got {}",
                field("ts"),
                r.ts
            ));
        }
        for (name, value) in [("offset", r.offset), ("rtt", r.rtt)] {
            if let Some(v) = value
                && !v.is_finite()
            {
                return Err(format!(
                    "{}: must be a finite number of seconds",
                    field(name)
                ));
            }
        }
        if let Some(rtt) = r.rtt
            && !(0.0..=60.0).contains(&rtt)
        {
            return Err(format!(
                "{}: must be 0..60 seconds, got {rtt}",
                field("rtt")
            ));
        }
        if let Some(leap) = r.leap
            && !(0..=3).contains(&leap)
        {
            return Err(format!("{}: must be 0..3, got {leap}", field("leap")));
        }
        if let Some(stratum) = r.stratum
            && !(0..=16).contains(&stratum)
        {
            return Err(format!(
                "{}: must be 0..16, got {stratum}",
                field("stratum")
            ));
        }
        match &r.error {
            Some(e) if e.trim().is_empty() => {
                return Err(format!(
                    "{}: must not be empty (use null for no error)",
                    field("error")
                ));
            }
            Some(e) if e.len() > MAX_ERROR_LEN => {
                return Err(format!("{}: at most {MAX_ERROR_LEN} bytes", field("error")));
            }
            Some(_) => {}
            None => {
                // A reply: the numbers scoring needs must be there.
                for (name, present) in [
                    ("offset", r.offset.is_some()),
                    ("rtt", r.rtt.is_some()),
                    ("stratum", r.stratum.is_some()),
                    ("leap", r.leap.is_some()),
                ] {
                    if !present {
                        return Err(format!("{}: required when error is null", field(name)));
                    }
                }
                if let Some(stratum) = r.stratum
                    && stratum > 10
                {
                    return Err(format!(
                        "{}: {stratum} is above 10, which must be reported as an error",
                        field("stratum")
                    ));
                }
            }
        }
        out.push(ResultIn {
            server,
            ts: r.ts,
            offset: r.offset,
            rtt: r.rtt,
            stratum: r.stratum,
            leap: r.leap,
            error: r.error,
        });
    }
    Ok((body.batch_id, out))
}

/// Parses a self-check report (at most [`MAX_SELF_CHECK_BODY`] bytes) and
/// checks its shape: the report and its words for staff, or a message
/// naming the first field at fault.
pub fn parse_self_check(body: &[u8]) -> Result<(SelfCheckReport, String), String> {
    let report: SelfCheckReport =
        serde_json::from_slice(body).map_err(|e| format!("invalid self-check report: {e}"))?;
    let detail = describe_self_check(&report)?;
    Ok((report, detail))
}

/// Largest self-check report accepted: `MAX_REFERENCES` references with
/// their longest texts, escaped.
pub const MAX_SELF_CHECK_BODY: usize = MAX_REFERENCES * (MAX_ERROR_LEN * 6 + 300 * 6 + 200) + 1024;

/// References a self-check may list.
pub const MAX_REFERENCES: usize = 16;

/// Checks a self-check report's shape and words it for staff.
fn describe_self_check(report: &SelfCheckReport) -> Result<String, String> {
    let finite = |v: f64, what: &str| {
        if v.is_finite() && v.abs() <= 1e6 {
            Ok(())
        } else {
            Err(format!("{what}: must be a finite number of seconds"))
        }
    };
    finite(report.max_offset, "max_offset")?;
    if let Some(offset) = report.offset {
        finite(offset, "offset")?;
    }
    if report.references.is_empty() || report.references.len() > MAX_REFERENCES {
        return Err(format!(
            "references: 1..{MAX_REFERENCES} expected, got {}",
            report.references.len()
        ));
    }
    let mut parts = Vec::with_capacity(report.references.len());
    for (i, reference) in report.references.iter().enumerate() {
        let printable = |text: &str, max: usize, what: &str| {
            if text.is_empty() || text.len() > max || text.chars().any(char::is_control) {
                Err(format!(
                    "references[{i}].{what}: 1..{max} bytes of printable text expected"
                ))
            } else {
                Ok(())
            }
        };
        printable(&reference.server, 300, "server")?;
        match (&reference.error, reference.offset) {
            (Some(error), _) => {
                printable(error, MAX_ERROR_LEN, "error")?;
                parts.push(format!("{}: {error}", reference.server));
            }
            (None, Some(offset)) => {
                finite(offset, &format!("references[{i}].offset"))?;
                parts.push(format!("{}: {:+.1} ms", reference.server, offset * 1000.0));
            }
            (None, None) => {
                return Err(format!("references[{i}]: an offset or an error expected"));
            }
        }
    }
    let summary = match report.offset {
        Some(offset) => format!(
            "median offset {:+.1} ms (limit {:.1} ms)",
            offset * 1000.0,
            report.max_offset * 1000.0
        ),
        None => "no reference answered".to_string(),
    };
    Ok(format!("{summary}; {}", parts.join(", ")))
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
