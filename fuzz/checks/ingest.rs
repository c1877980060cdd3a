//! `ingest`: the monitor ingest API's request bodies (a results document,
//! a self-check report), parsed and validated as the API does, give the
//! values or a message naming the field, never a panic; what they accept
//! keeps every rule the database relies on.

use std::collections::HashSet;
use std::net::IpAddr;

use timepool::shared::monitor_protocol::{
    MAX_BATCH, MAX_ERROR_LEN, MAX_REFERENCES, parse_results, parse_self_check,
};

/// The first byte picks the document; the rest is its body.
pub fn check(data: &[u8]) {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    if selector & 1 == 0 {
        results(body);
    } else {
        self_check(body);
    }
}

fn results(body: &[u8]) {
    let (_batch, results) = match parse_results(body) {
        Ok(parsed) => parsed,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    assert!(results.len() <= MAX_BATCH);
    let mut seen = HashSet::new();
    for result in &results {
        let address: IpAddr = result.server.parse().expect("a valid address");
        assert_eq!(address.to_string(), result.server, "canonical text");
        assert!(seen.insert(result.server.clone()), "no server twice");
        assert!(result.ts > 0);
        for value in [result.offset, result.rtt].into_iter().flatten() {
            assert!(value.is_finite());
        }
        if let Some(rtt) = result.rtt {
            assert!((0.0..=60.0).contains(&rtt));
        }
        match &result.error {
            Some(error) => {
                assert!(!error.trim().is_empty() && error.len() <= MAX_ERROR_LEN);
            }
            None => {
                assert!(result.offset.is_some() && result.rtt.is_some());
                assert!(result.stratum.is_some_and(|s| (0..=10).contains(&s)));
                assert!(result.leap.is_some_and(|l| (0..=3).contains(&l)));
            }
        }
    }
}

fn self_check(body: &[u8]) {
    let (report, detail) = match parse_self_check(body) {
        Ok(parsed) => parsed,
        Err(message) => {
            assert!(!message.is_empty());
            return;
        }
    };
    assert!((1..=MAX_REFERENCES).contains(&report.references.len()));
    assert!(report.max_offset.is_finite());
    // The words for staff stay bounded by the limits on each text.
    let bound = MAX_REFERENCES * (300 + MAX_ERROR_LEN + 40) + 100;
    assert!(detail.len() <= bound, "{} bytes", detail.len());
    assert!(!detail.chars().any(|c| c.is_control()));
}
