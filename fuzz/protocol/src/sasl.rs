//! A client's byte stream on the SASL transport: negotiation (`hive_thrift::sasl`), then the
//! length-prefixed frames (`hive_thrift::frame::SaslFrameCodec`) that follow it.
//!
//! Asserts: the server state machine reaches the same verdict, with the same bytes left over,
//! whether the stream arrives at once or byte by byte; credentials it accepts re-encode to the
//! bytes sent and parse back equal; no negotiation payload or data frame exceeds its limit;
//! decoded frames re-encode to exactly the bytes consumed. The client side (a driver's answer)
//! and the bare PLAIN parser get the same bytes.

use bytes::BytesMut;
use hive_thrift::error::SaslError;
use hive_thrift::frame::{Framing, MessageCodec};
use hive_thrift::message::MessageHeader;
use hive_thrift::sasl::{
    decode_negotiation, encode_negotiation, PlainCredentials, SaslClient, SaslServer,
};

use crate::stream::decode_both_ways;

/// Small limits, so fuzz inputs reach them.
pub const MAX_NEGOTIATION: usize = 256;
pub const MAX_FRAME: usize = 2048;

pub fn check(data: &[u8]) {
    // One negotiation frame.
    let mut buf = BytesMut::from(data);
    if let Ok(Some((status, payload))) = decode_negotiation(&mut buf, MAX_NEGOTIATION) {
        assert!(payload.len() <= MAX_NEGOTIATION);
        let mut again = BytesMut::new();
        encode_negotiation(status, &payload, &mut again);
        assert_eq!(
            again[..],
            data[..again.len()],
            "negotiation frame re-encodes"
        );
    }

    // PLAIN credentials: what parses re-encodes to the same bytes.
    if let Ok(creds) = PlainCredentials::parse(data) {
        assert!(!creds.user.is_empty());
        assert_eq!(creds.encode(), data, "PLAIN credentials re-encode");
    }

    // The client side reading a server's verdict.
    let _ = SaslClient::start(&plain(), MAX_NEGOTIATION, &mut BytesMut::new())
        .decode(&mut BytesMut::from(data));

    // The server side over the whole stream, at once and byte by byte.
    let (whole, rest) = server_at_once(data);
    let trickled = server_byte_by_byte(data);
    match (&whole, trickled) {
        (Ok(None), Ok(None)) => return,
        (w, Ok(None)) => panic!("at once: {w:?}; byte by byte: still negotiating"),
        (w, t) => {
            let (t, consumed) = match t {
                Ok(Some((creds, consumed))) => (Ok(Some(creds)), consumed),
                Err(e) => (Err(e), 0),
                Ok(None) => unreachable!(),
            };
            assert_eq!(&t, w, "byte-by-byte negotiation ended otherwise");
            if w.is_ok() {
                assert_eq!(rest.len(), data.len() - consumed, "left-over bytes differ");
            }
        }
    }
    let Ok(Some(creds)) = whole else { return };
    assert!(!creds.user.is_empty());
    assert_eq!(
        PlainCredentials::parse(&creds.encode()).as_ref(),
        Ok(&creds)
    );

    // What follows the negotiation: SASL data frames.
    let decoded = decode_both_ways(&rest, || {
        let mut codec = MessageCodec::new(Framing::Sasl, MAX_FRAME);
        move |buf: &mut BytesMut| codec.decode_message(buf)
    });
    let codec = MessageCodec::new(Framing::Sasl, MAX_FRAME);
    let mut again = BytesMut::new();
    for m in &decoded.messages {
        assert!(m.len() <= MAX_FRAME, "frame of {} bytes", m.len());
        codec.encode_message(m, &mut again).unwrap();
        let _ = MessageHeader::parse(m);
    }
    assert_eq!(
        again[..],
        rest[..again.len()],
        "frames re-encode to the bytes consumed"
    );
}

fn plain() -> PlainCredentials {
    PlainCredentials {
        authzid: String::new(),
        user: "alice".into(),
        password: "secret".into(),
    }
}

type Verdict = Result<Option<PlainCredentials>, SaslError>;

fn server_at_once(data: &[u8]) -> (Verdict, Vec<u8>) {
    let mut server = SaslServer::new(MAX_NEGOTIATION);
    let mut buf = BytesMut::from(data);
    let verdict = server.decode(&mut buf);
    (verdict, buf.to_vec())
}

/// The verdict and how many bytes had arrived when it came.
fn server_byte_by_byte(data: &[u8]) -> Result<Option<(PlainCredentials, usize)>, SaslError> {
    let mut server = SaslServer::new(MAX_NEGOTIATION);
    let mut buf = BytesMut::new();
    for (i, &b) in data.iter().enumerate() {
        buf.extend_from_slice(&[b]);
        if let Some(creds) = server.decode(&mut buf)? {
            assert!(
                buf.is_empty(),
                "verdict came only after bytes past the response"
            );
            return Ok(Some((creds, i + 1)));
        }
    }
    Ok(None)
}
