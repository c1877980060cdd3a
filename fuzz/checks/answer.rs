//! `answer`: any bytes in, and either no response or
//! a response that fits its size limit, keeps the query's ID, and parses
//! completely with the `domain` crate. Some inputs go through the rate
//! limited path (a limiter of one response per second, slip 2), so slipped
//! (TC or BADCOOKIE) and dropped responses are covered too.

use std::cell::RefCell;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use timepool::dns::answer::{
    Client, RateLimit, Transport, respond_rate_limited, respond_with_outcome,
};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::rrl::{RateLimiter, RrlSettings};

use super::common::{config, context, table, verify_response};

thread_local! {
    static LIMITER: RefCell<RateLimiter> = RefCell::new(RateLimiter::new(
        &RrlSettings {
            slip: 2,
            table_size: 64,
            exempt: Vec::new(),
            ..RrlSettings::at_rate(1)
        },
        1,
    ));
}

/// The first byte picks the transport, the client's address and whether
/// UDP is rate limited; the rest is the packet.
pub fn check(data: &[u8]) {
    let Some((&selector, packet)) = data.split_first() else {
        return;
    };
    let transport = if selector & 1 == 0 {
        Transport::Udp
    } else {
        Transport::Tcp
    };
    let source = if selector & 2 == 0 {
        std::net::IpAddr::from([198, 51, 100, selector])
    } else {
        std::net::IpAddr::from([0x2001, 0xdb8, 0, 0, 0, 0, 0, u16::from(selector)])
    };
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = context(table(), &cookies);
    let client = Client { source, transport };
    let mut rng = SmallRng::seed_from_u64(u64::from(selector));
    let mut out = [0u8; 16 * 1024];
    let answered = if transport == Transport::Udp && selector & 4 != 0 {
        LIMITER.with_borrow_mut(|limiter| {
            let limit = RateLimit {
                limiter,
                now_ms: u32::from(selector) * 100,
            };
            respond_rate_limited(&ctx, packet, client, &mut rng, &mut out, limit)
        })
    } else {
        respond_with_outcome(&ctx, packet, client, &mut rng, &mut out)
    };
    let Some((length, _)) = answered else {
        return;
    };
    if length == 0 {
        // Dropped by the rate limiter.
        return;
    }
    let limit = match transport {
        Transport::Udp => usize::from(config().edns_max_payload),
        Transport::Tcp => out.len(),
    };
    verify_response(packet, &out[..length], limit);
}
