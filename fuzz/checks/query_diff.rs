//! `query_diff`: a differential check of the query parser. Whatever our
//! wire layer (`timepool::dns::wire::query::Query::parse`) accepts, the
//! `domain` crate must read the same way: one question with the same name
//! (letter case kept), type and class, and, when there is an OPT record,
//! the same payload size, version, DO bit, client subnet and client
//! cookie. Our parser may refuse more than `domain` (it answers those
//! with FORMERR or NOTIMP), never read a packet differently.

use domain::base::Message;
use domain::base::opt::cookie::Cookie;
use domain::base::opt::subnet::ClientSubnet;
use timepool::dns::wire::query::Query;

pub fn check(data: &[u8]) {
    let Ok(ours) = Query::parse(data) else {
        return;
    };
    let message =
        Message::from_octets(data).unwrap_or_else(|e| panic!("domain refuses the header: {e}"));
    let question = message
        .sole_question()
        .unwrap_or_else(|e| panic!("domain does not find one question: {e}"));
    let mut name = Vec::new();
    for label in question.qname().iter() {
        name.push(label.len() as u8);
        name.extend_from_slice(label.as_slice());
    }
    assert_eq!(ours.qname, name.as_slice(), "the question name");
    assert_eq!(ours.qtype, question.qtype().to_int(), "the question type");
    assert_eq!(
        ours.qclass,
        question.qclass().to_int(),
        "the question class"
    );
    assert_eq!(ours.id, message.header().id(), "the ID");

    let theirs = message.opt();
    let Some(edns) = ours.edns else {
        assert!(theirs.is_none(), "domain finds an OPT record we did not");
        return;
    };
    let opt = theirs.expect("domain finds the OPT record");
    assert_eq!(
        edns.udp_payload_size,
        opt.udp_payload_size(),
        "payload size"
    );
    assert_eq!(edns.version, opt.version(), "EDNS version");
    assert_eq!(edns.dnssec_ok, opt.dnssec_ok(), "DO bit");
    let subnet = opt.opt().first::<ClientSubnet>();
    match (edns.client_subnet, subnet) {
        (None, None) => {}
        (Some(ours), Some(theirs)) => {
            assert_eq!(
                ours.source_prefix,
                theirs.source_prefix_len(),
                "ECS source prefix"
            );
            assert_eq!(
                ours.scope_prefix,
                theirs.scope_prefix_len(),
                "ECS scope prefix"
            );
            assert_eq!(ours.ip(), theirs.addr(), "ECS address");
        }
        (ours, theirs) => panic!("ECS: ours {ours:?}, domain's {theirs:?}"),
    }
    let cookie = opt.opt().first::<Cookie>();
    match (edns.cookie, cookie) {
        (None, None) => {}
        (Some(ours), Some(theirs)) => {
            assert_eq!(ours.client, theirs.client().into_octets(), "client cookie");
        }
        (ours, theirs) => panic!("cookie: ours {ours:?}, domain's {theirs:?}"),
    }
}
