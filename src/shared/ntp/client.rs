//! The monitor's SNTP check of one server: a few samples seconds apart, the
//! best by lowest round-trip delay.

use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use tokio::net::UdpSocket;

use super::packet::{KissCode, MODE_SERVER, NtpTimestamp, Packet};
use crate::shared::monitor_protocol;

/// How a check is made.
#[derive(Clone, Debug)]
pub struct CheckConfig {
    /// Requests per check (the pool's monitor sends 3).
    pub samples: u32,
    /// Pause between requests; a few seconds so a rate-limiting server is
    /// not provoked by the monitor itself.
    pub gap: Duration,
    /// How long to wait for each reply.
    pub timeout: Duration,
}

impl Default for CheckConfig {
    fn default() -> CheckConfig {
        CheckConfig {
            samples: 3,
            gap: Duration::from_secs(2),
            timeout: Duration::from_secs(2),
        }
    }
}

/// The best sample of a check.
#[derive(Clone, Debug, PartialEq)]
pub struct Measurement {
    /// Server clock minus ours, seconds.
    pub offset: f64,
    /// Round-trip delay without the server's processing time, seconds.
    pub rtt: f64,
    pub stratum: u8,
    pub leap: u8,
    pub refid: String,
}

/// Why a check gave no usable measurement. `code()` is the error text the
/// monitor reports (`shared::monitor_protocol`).
#[derive(Clone, Debug, PartialEq)]
pub enum CheckError {
    /// No valid reply to any request.
    NoResponse,
    /// The server sent a Kiss-o'-Death packet.
    Kod(KissCode),
    /// The server claims a stratum above 10 (16 = unsynchronised).
    StratumTooHigh(u8),
    /// The local socket failed (not the server's fault, but reported).
    Network(String),
}

impl CheckError {
    /// The error text of the monitor protocol: "timeout", "kod:RATE",
    /// "kod:DENY", "kod:RSTR", or a free text for other errors.
    pub fn code(&self) -> String {
        match self {
            CheckError::NoResponse => monitor_protocol::ERROR_TIMEOUT.to_string(),
            CheckError::Kod(code) => monitor_protocol::kod_error(code.as_str()),
            CheckError::StratumTooHigh(s) => format!("stratum {s} above 10"),
            CheckError::Network(e) => format!("network: {e}"),
        }
    }
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.code())
    }
}

impl std::error::Error for CheckError {}

/// Offset and delay from the four timestamps (RFC 5905 section 8):
/// t1 request sent (ours), t2 received (server's), t3 reply sent (server's),
/// t4 reply received (ours).
/// Differences are taken on the 64-bit values (exact, and correct across an
/// era wrap) before converting to seconds.
pub fn offset_and_delay(
    t1: NtpTimestamp,
    t2: NtpTimestamp,
    t3: NtpTimestamp,
    t4: NtpTimestamp,
) -> (f64, f64) {
    let secs = |later: NtpTimestamp, earlier: NtpTimestamp| {
        later.0.wrapping_sub(earlier.0) as i64 as f64 / 4_294_967_296.0
    };
    let offset = (secs(t2, t1) + secs(t3, t4)) / 2.0;
    let delay = secs(t4, t1) - secs(t3, t2);
    (offset, delay)
}

/// Checks one server. A KoD or a stratum above 10 ends the check at once
/// (further requests would only annoy a server that asked us to stop).
pub async fn check(server: SocketAddr, config: &CheckConfig) -> Result<Measurement, CheckError> {
    let bind: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0"
            .parse()
            .map_err(|_| CheckError::Network("bind address".into()))?
    } else {
        "[::]:0"
            .parse()
            .map_err(|_| CheckError::Network("bind address".into()))?
    };
    let socket = UdpSocket::bind(bind)
        .await
        .map_err(|e| CheckError::Network(format!("bind: {e}")))?;
    socket
        .connect(server)
        .await
        .map_err(|e| CheckError::Network(format!("connect {server}: {e}")))?;
    let mut best: Option<Measurement> = None;
    for sample in 0..config.samples.max(1) {
        if sample > 0 {
            tokio::time::sleep(config.gap).await;
        }
        let Some(m) = one_sample(&socket, config.timeout).await? else {
            continue;
        };
        if best.as_ref().is_none_or(|b| m.rtt < b.rtt) {
            best = Some(m);
        }
    }
    best.ok_or(CheckError::NoResponse)
}

/// One request and its reply: Ok(None) when no valid reply came in time.
async fn one_sample(
    socket: &UdpSocket,
    timeout: Duration,
) -> Result<Option<Measurement>, CheckError> {
    let t1 = NtpTimestamp::from_system_time(SystemTime::now());
    let request = Packet::client_request(t1).encode();
    if let Err(e) = socket.send(&request).await {
        // ICMP port unreachable from an earlier request shows up here on a
        // connected socket: the server is not there, which is no response.
        if e.kind() == std::io::ErrorKind::ConnectionRefused {
            return Ok(None);
        }
        return Err(CheckError::Network(format!("send: {e}")));
    }
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = [0u8; 1024];
    loop {
        let received = match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
            Err(_elapsed) => return Ok(None),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Ok(None),
            Ok(Err(e)) => return Err(CheckError::Network(format!("receive: {e}"))),
            Ok(Ok(n)) => n,
        };
        let t4 = NtpTimestamp::from_system_time(SystemTime::now());
        match read_reply(&buf[..received], t1, t4) {
            // Not NTP, or not the reply to this request: keep waiting.
            None => continue,
            Some(outcome) => return outcome.map(Some),
        }
    }
}

/// What a datagram received at `t4` says about the request sent at `t1`:
/// None when it is not the reply to it (not NTP, not a server's packet, or
/// late, duplicated or spoofed: its origin is not our transmit time); else
/// the measurement, or why the server is not usable (a KoD, a stratum
/// above 10).
pub fn read_reply(
    datagram: &[u8],
    t1: NtpTimestamp,
    t4: NtpTimestamp,
) -> Option<Result<Measurement, CheckError>> {
    let reply = Packet::decode(datagram).ok()?;
    if reply.mode != MODE_SERVER || reply.origin != t1 {
        return None;
    }
    if let Some(code) = reply.kiss_code() {
        return Some(Err(CheckError::Kod(code)));
    }
    if reply.stratum > 10 {
        return Some(Err(CheckError::StratumTooHigh(reply.stratum)));
    }
    let (offset, rtt) = offset_and_delay(t1, reply.receive, reply.transmit, t4);
    Some(Ok(Measurement {
        offset,
        rtt: rtt.max(0.0),
        stratum: reply.stratum,
        leap: reply.leap,
        refid: reply.refid_text(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_and_delay_from_four_timestamps() {
        // Server 0.5 s ahead, 20 ms each way, 1 ms processing.
        let at = |s: f64| NtpTimestamp((s * 4_294_967_296.0) as u64);
        let (offset, delay) = offset_and_delay(at(100.0), at(100.52), at(100.521), at(100.041));
        assert!((offset - 0.5).abs() < 1e-9, "{offset}");
        assert!((delay - 0.040).abs() < 1e-9, "{delay}");
    }
}
