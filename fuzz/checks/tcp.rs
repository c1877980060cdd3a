//! `tcp`: the DNS-over-TCP framing of a connection
//! (`timepool::dns::server::tcp::serve_frames`, the code every TCP
//! connection runs) fed any byte stream: never a panic; what it writes is
//! a sequence of complete frames, each a well-formed response to the
//! query in the same place of the stream, no more responses than whole
//! queries sent, and never more than the connection's query limit.

use std::cell::RefCell;
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::SmallRng;
use timepool::dns::answer::{Client, Transport, respond_with_outcome};
use timepool::dns::cookie::CookieSecrets;
use timepool::dns::server::tcp::{TCP_RESPONSE_SIZE, TcpSettings, serve_frames};

use super::common::{context, table, verify_response};

/// Queries answered on one connection, at most (small, so the limit is
/// reached by the fuzzer too).
const MAX_QUERIES: u32 = 8;

thread_local! {
    static RUNTIME: RefCell<tokio::runtime::Runtime> = RefCell::new(
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime"),
    );
}

pub fn check(data: &[u8]) {
    let settings = TcpSettings {
        idle_timeout: Duration::from_secs(10),
        max_lifetime: Duration::from_secs(120),
        max_queries: MAX_QUERIES,
        ..TcpSettings::default()
    };
    let cookies = CookieSecrets::single([7; 16]);
    let ctx = context(table(), &cookies);
    let client = Client {
        source: std::net::IpAddr::from([198, 51, 100, 9]),
        transport: Transport::Tcp,
    };
    let mut rng = SmallRng::seed_from_u64(3);
    let mut stream = tokio::io::join(data, Vec::new());
    RUNTIME.with_borrow(|runtime| {
        runtime.block_on(serve_frames(&mut stream, settings, |query, response| {
            respond_with_outcome(&ctx, query, client, &mut rng, response).map(|(n, _)| n)
        }))
    });
    let (_, written) = stream.into_inner();

    // The queries the stream holds, whole ones only.
    let mut queries = Vec::new();
    let mut rest = data;
    while let Some((length, after)) = rest.split_first_chunk::<2>() {
        let length = usize::from(u16::from_be_bytes(*length));
        let Some(query) = after.get(..length) else {
            break;
        };
        queries.push(query);
        rest = &after[length..];
    }
    let mut responses = 0;
    let mut rest = written.as_slice();
    while !rest.is_empty() {
        let (length, after) = rest
            .split_first_chunk::<2>()
            .expect("a response frame has its length");
        let length = usize::from(u16::from_be_bytes(*length));
        let response = after.get(..length).expect("a response frame is whole");
        let query = queries
            .get(responses)
            .expect("no more responses than whole queries");
        verify_response(query, response, TCP_RESPONSE_SIZE);
        responses += 1;
        rest = &after[length..];
    }
    assert!(responses <= MAX_QUERIES as usize);
}
