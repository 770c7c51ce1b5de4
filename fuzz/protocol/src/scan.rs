//! The NOSASL message scanner (`hive_thrift::scan`) and the raw codec built on it.
//!
//! Asserts: resuming over a growing buffer gives the answer a one-shot scan gives, as soon as the
//! last byte of the message arrives; a message found fits the limit and passes
//! `validate_lengths` (a limit of exactly its own length); the raw codec splits a stream the same
//! way whatever the arrival pattern, and re-encoding its messages gives back the bytes consumed.

use bytes::BytesMut;
use hive_thrift::frame::{Framing, MessageCodec};
use hive_thrift::message::{validate_lengths, MessageHeader};
use hive_thrift::scan::MessageScanner;

use crate::stream::decode_both_ways;

/// Small, so fuzz inputs reach the limit.
pub const MAX_MESSAGE: usize = 2048;

/// A scan's answer with a TooLarge error's size left out: the size is where the scanner found
/// the budget exceeded, a lower bound that depends on how much of the message it could see at
/// once (a one-shot scan may skip a whole list where a resumed one goes element by element).
fn comparable(
    answer: &Result<Option<usize>, hive_thrift::error::FrameError>,
) -> Result<Option<usize>, String> {
    answer
        .as_ref()
        .map(|found| *found)
        .map_err(comparable_error)
}

fn comparable_error(error: &hive_thrift::error::FrameError) -> String {
    match error {
        hive_thrift::error::FrameError::TooLarge { size, max } => {
            assert!(
                *size > *max as u64,
                "TooLarge within the limit: {size} <= {max}"
            );
            format!("too large for {max}")
        }
        e => e.to_string(),
    }
}

pub fn check(data: &[u8]) {
    let whole = MessageScanner::new(MAX_MESSAGE).scan(data);

    // The same bytes arriving one at a time.
    let mut scanner = MessageScanner::new(MAX_MESSAGE);
    let mut resumed = None;
    for end in 0..=data.len() {
        match scanner.scan(&data[..end]) {
            Ok(None) => {}
            answer => {
                resumed = Some((end, answer));
                break;
            }
        }
    }
    match resumed {
        None => assert_eq!(
            whole,
            Ok(None),
            "one-shot scan finished, resumed scan did not"
        ),
        Some((end, answer)) => {
            assert_eq!(
                comparable(&answer),
                comparable(&whole),
                "resumed scan disagrees with one-shot scan: {answer:?} vs {whole:?}"
            );
            if let Ok(Some(len)) = answer {
                assert_eq!(
                    len, end,
                    "message end known only when its last byte arrived"
                );
            }
        }
    }

    if let Ok(Some(len)) = whole {
        assert!(len <= MAX_MESSAGE && len <= data.len());
        let message = &data[..len];
        // What the gateway does before decoding a call: the limit is the message's own length.
        assert_eq!(MessageScanner::new(len).scan(message), Ok(Some(len)));
        validate_lengths(message).expect("a scanned message passes validate_lengths");
        if let Ok(header) = MessageHeader::parse(message) {
            assert!(header.body_offset <= len);
            let at = header.seqid_offset;
            assert_eq!(message[at..at + 4], header.seqid.to_be_bytes());
        }
    }

    // The raw (NOSASL) codec over the input as a stream of messages.
    let decoded = decode_both_ways(data, || {
        let mut codec = MessageCodec::new(Framing::Raw, MAX_MESSAGE);
        move |buf: &mut BytesMut| codec.decode_message(buf).map_err(|e| comparable_error(&e))
    });
    let codec = MessageCodec::new(Framing::Raw, MAX_MESSAGE);
    let mut again = BytesMut::new();
    for m in &decoded.messages {
        assert!(
            m.len() <= MAX_MESSAGE,
            "raw codec returned {} bytes",
            m.len()
        );
        codec.encode_message(m, &mut again).unwrap();
    }
    assert_eq!(
        again[..],
        data[..again.len()],
        "raw messages are the bytes consumed"
    );
}
