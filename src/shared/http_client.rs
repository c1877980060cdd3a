//! The HTTP client of the DNS node (`--snapshot-url`) and the monitor
//! agent (`--api`): ureq over rustls (ring), certificates and host names
//! verified against the system's roots (rustls-platform-verifier) or, with
//! `--ca-file`, against a private CA only; and the rule for plain HTTP:
//! fine to loopback, a loud warning elsewhere, refused where a secret
//! (a token) would travel in clear text unless the operator insists.
//!
//! Architecture invariant: knows URLs, TLS and files; nothing of snapshots
//! or the monitor protocol. Built only with a wing that has a client.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig, TlsProvider};

/// Largest CA file read.
const MAX_CA_FILE: u64 = 1024 * 1024;

/// The roots a client trusts: the system's, or the certificates of a PEM
/// file (a private CA), which then are the only ones.
pub fn root_certs(ca_file: Option<&Path>) -> Result<RootCerts, String> {
    use std::io::Read;
    let Some(path) = ca_file else {
        return Ok(RootCerts::PlatformVerifier);
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_CA_FILE + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("--ca-file {}: {e}", path.display()))?;
    if bytes.len() as u64 > MAX_CA_FILE {
        return Err(format!(
            "--ca-file {}: larger than {MAX_CA_FILE} bytes",
            path.display()
        ));
    }
    let mut certs: Vec<Certificate<'static>> = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("--ca-file {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "--ca-file {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(RootCerts::Specific(Arc::new(certs)))
}

/// A blocking HTTP agent: TLS verified against `roots`, every request
/// bounded by `timeout`, HTTP error statuses returned as responses.
pub fn agent(timeout: Duration, roots: RootCerts) -> ureq::Agent {
    let tls = TlsConfig::builder()
        .provider(TlsProvider::Rustls)
        .root_certs(roots)
        .unversioned_rustls_crypto_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .build();
    ureq::Agent::config_builder()
        .tls_config(tls)
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        // A control plane that moved is reconfigured, not followed
        // silently (and never from https:// down to http://).
        .max_redirects(0)
        .user_agent(concat!("timepool/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// How a URL would carry a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// `https://`: encrypted, the server's certificate checked.
    Tls,
    /// `http://` to this machine: nothing crosses a network.
    PlainLoopback,
    /// `http://` to anything else: readable and changeable on the way.
    PlainRemote,
}

/// Reads the scheme and host of a URL.
pub fn transport(url: &str) -> Result<Transport, String> {
    let uri: ureq::http::Uri = url.parse().map_err(|e| format!("{url:?}: {e}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{url:?}: no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']');
    match uri.scheme_str() {
        Some("https") => Ok(Transport::Tls),
        Some("http") => {
            let loopback = host.eq_ignore_ascii_case("localhost")
                || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
            Ok(if loopback {
                Transport::PlainLoopback
            } else {
                Transport::PlainRemote
            })
        }
        _ => Err(format!("{url:?}: want an http:// or https:// URL")),
    }
}

/// The start-up check of a client's URL (`flag` names it in messages).
/// Plain HTTP to another machine is warned about loudly; when the client
/// sends a secret (`secret`: what it is) it is refused unless
/// `insecure_http` is set.
pub fn check_url(
    flag: &str,
    url: &str,
    secret: Option<&str>,
    insecure_http: bool,
) -> Result<Transport, String> {
    let transport = transport(url).map_err(|e| format!("{flag}: {e}"))?;
    if transport == Transport::PlainRemote {
        if let Some(secret) = secret
            && !insecure_http
        {
            return Err(format!(
                "{flag} {url}: plain HTTP to another machine would send the {secret} in clear text; use https:// (or --insecure-http on a network you trust)"
            ));
        }
        tracing::warn!(
            "{flag} {url} is plain HTTP to another machine: anyone on the path can read{} and change what travels; use https://",
            if secret.is_some() { " the token" } else { "" }
        );
    }
    Ok(transport)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transports_of_urls() {
        for (url, expected) in [
            ("https://cp.example.net/api/v1/snapshot", Transport::Tls),
            ("http://127.0.0.1:8080/x", Transport::PlainLoopback),
            ("http://127.9.9.9/x", Transport::PlainLoopback),
            ("http://[::1]:8080/x", Transport::PlainLoopback),
            ("http://localhost:8080", Transport::PlainLoopback),
            ("http://10.0.0.10:8080/x", Transport::PlainRemote),
            ("http://cp.example.net", Transport::PlainRemote),
            ("http://localhost.evil.example", Transport::PlainRemote),
        ] {
            assert_eq!(transport(url), Ok(expected), "{url}");
        }
        assert!(transport("ftp://x").is_err());
        assert!(transport("not a url").is_err());
    }

    #[test]
    fn a_secret_is_not_sent_over_plain_http_to_another_machine() {
        let refused = check_url(
            "--api",
            "http://192.0.2.1:8080",
            Some("monitor token"),
            false,
        );
        assert!(refused.unwrap_err().contains("clear text"));
        assert!(check_url("--api", "http://192.0.2.1:8080", Some("t"), true).is_ok());
        assert!(check_url("--api", "http://127.0.0.1:8080", Some("t"), false).is_ok());
        assert!(check_url("--api", "https://cp.example.net", Some("t"), false).is_ok());
        assert!(check_url("--snapshot-url", "http://192.0.2.1/s", None, false).is_ok());
    }
}
