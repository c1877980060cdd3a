//! The check of a server before it joins: one SNTP exchange from the
//! control plane (`shared::ntp`), so an address with nothing listening,
//! or a clock the pool would not hand out, is refused with the reason
//! next to the field instead of showing up as a low score later.
//!
//! The rules (web/README.md, "Adding a server"): an answer within the
//! timeout, not a Kiss-o'-Death (stratum 0), stratum 1 to `MAX_STRATUM`,
//! not unsynchronised (leap 3), and within `MAX_OFFSET_SECS` of our clock.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::i18n::trf;
use crate::shared::ntp::{CheckConfig, CheckError, check};

/// The highest stratum a new server may have (the pool's rule).
pub const MAX_STRATUM: u8 = 5;
/// How far a new server's clock may be from ours.
pub const MAX_OFFSET_SECS: f64 = 10.0;
/// The most addresses one submission checks (a hostname with more is
/// refused): each is a packet we send on someone's say-so.
pub const MAX_ADDRESSES: usize = 8;

/// Where and how the check is made; `None` in the settings turns it off
/// (instances that cannot send NTP, and tests that add documentation
/// addresses).
#[derive(Clone, Debug, PartialEq)]
pub struct JoinCheck {
    /// The NTP port (123; tests and the demo run servers elsewhere).
    pub port: u16,
    /// Requests per address, a second apart; the first answer counts.
    pub samples: u32,
    /// How long to wait for each answer.
    pub timeout: Duration,
}

impl Default for JoinCheck {
    fn default() -> JoinCheck {
        JoinCheck {
            port: 123,
            samples: 2,
            timeout: Duration::from_secs(2),
        }
    }
}

/// Checks every address at once; the message of the first that fails.
pub async fn check_all(settings: &JoinCheck, addresses: &[IpAddr]) -> Result<(), String> {
    let config = CheckConfig {
        samples: settings.samples,
        gap: Duration::from_secs(1),
        timeout: settings.timeout,
    };
    let mut checks = tokio::task::JoinSet::new();
    for (index, &address) in addresses.iter().enumerate() {
        let config = config.clone();
        let target = SocketAddr::new(address, settings.port);
        checks.spawn(async move { (index, address, check(target, &config).await) });
    }
    let mut outcomes = Vec::with_capacity(addresses.len());
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok(outcome) => outcomes.push(outcome),
            Err(error) => return Err(format!("join check task failed: {error}")),
        }
    }
    // The same order as typed, so the message names the first address.
    outcomes.sort_by_key(|(index, _, _)| *index);
    for (_, address, outcome) in outcomes {
        judge(address, settings.port, outcome)?;
    }
    Ok(())
}

/// The rules applied to one answer.
fn judge(
    address: IpAddr,
    port: u16,
    outcome: Result<crate::shared::ntp::Measurement, CheckError>,
) -> Result<(), String> {
    let address_text = address.to_string();
    let measurement = match outcome {
        Ok(m) => m,
        Err(CheckError::NoResponse) => {
            return Err(trf(
                "{address} did not answer an NTP query on UDP port {port}. Check that its NTP service runs and that its firewall lets queries in, then try again.",
                &[("address", address_text), ("port", port.to_string())],
            ));
        }
        Err(CheckError::Kod(code)) => {
            return Err(trf(
                "{address} refused the query (kiss code {code}); a pool server must answer the pool's clients.",
                &[
                    ("address", address_text),
                    ("code", code.as_str().to_string()),
                ],
            ));
        }
        Err(CheckError::StratumTooHigh(stratum)) => {
            return Err(stratum_error(&address_text, stratum));
        }
        Err(CheckError::Network(error)) => {
            return Err(trf(
                "The NTP query to {address} could not be sent ({error}); try again.",
                &[("address", address_text), ("error", error)],
            ));
        }
    };
    // Stratum 0 without a known kiss code is still no time to hand out.
    if measurement.stratum == 0 || measurement.stratum > MAX_STRATUM {
        return Err(stratum_error(&address_text, measurement.stratum));
    }
    if measurement.leap == 3 {
        return Err(trf(
            "{address} says its clock is not synchronised (leap indicator 3).",
            &[("address", address_text)],
        ));
    }
    if !measurement.offset.is_finite() || measurement.offset.abs() > MAX_OFFSET_SECS {
        return Err(trf(
            "{address} is {offset} seconds off; a pool server must be within {limit} seconds.",
            &[
                ("address", address_text),
                (
                    "offset",
                    super::i18n::current().fixed(measurement.offset.abs(), 1),
                ),
                ("limit", (MAX_OFFSET_SECS as i64).to_string()),
            ],
        ));
    }
    Ok(())
}

fn stratum_error(address: &str, stratum: u8) -> String {
    trf(
        "{address} answered with stratum {stratum}; a pool server needs stratum 1 to {max}.",
        &[
            ("address", address.to_string()),
            ("stratum", stratum.to_string()),
            ("max", MAX_STRATUM.to_string()),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::ntp::{KissCode, Measurement};

    fn answer(stratum: u8, leap: u8, offset: f64) -> Result<Measurement, CheckError> {
        Ok(Measurement {
            offset,
            rtt: 0.001,
            stratum,
            leap,
            refid: "GPS".into(),
        })
    }

    #[test]
    fn the_rules_at_their_edges() {
        let address: IpAddr = "192.0.2.1".parse().expect("address");
        let cases: Vec<(Result<Measurement, CheckError>, Option<&str>)> = vec![
            (answer(1, 0, 0.0), None),
            (answer(5, 0, -10.0), None),
            (answer(2, 0, 10.0), None),
            (answer(6, 0, 0.0), Some("stratum 6")),
            (answer(0, 0, 0.0), Some("stratum 0")),
            (Err(CheckError::StratumTooHigh(16)), Some("stratum 16")),
            (answer(2, 3, 0.0), Some("not synchronised")),
            (answer(2, 0, 10.1), Some("10.1 seconds off")),
            (answer(2, 0, -30.0), Some("30.0 seconds off")),
            (answer(2, 0, f64::NAN), Some("seconds off")),
            (
                Err(CheckError::NoResponse),
                Some("did not answer an NTP query on UDP port 123"),
            ),
            (Err(CheckError::Kod(KissCode::Rate)), Some("kiss code RATE")),
            (
                Err(CheckError::Network("bind: nope".into())),
                Some("could not be sent (bind: nope)"),
            ),
        ];
        for (outcome, want) in cases {
            let shown = format!("{outcome:?}");
            match (judge(address, 123, outcome), want) {
                (Ok(()), None) => {}
                (Err(message), Some(want)) => {
                    assert!(message.contains(want), "{shown}: {message}");
                    assert!(
                        message.starts_with("192.0.2.1") || message.contains("192.0.2.1"),
                        "{message}"
                    );
                }
                (got, want) => panic!("{shown}: got {got:?}, want {want:?}"),
            }
        }
    }
}
