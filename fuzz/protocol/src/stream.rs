//! Decoding a whole byte stream into messages, at once and one byte at a time.

use bytes::{Bytes, BytesMut};
use std::fmt::Debug;

/// What a stream decoded to: the messages, then the error that stopped it (if any).
#[derive(Debug, PartialEq)]
pub struct Decoded<E> {
    pub messages: Vec<Bytes>,
    pub error: Option<E>,
    /// Bytes left undecoded when the input ran out (meaningless after an error).
    pub leftover: usize,
}

/// Decodes `data` with `decode` given everything at once, and again with a fresh decoder fed one
/// byte at a time (as a slow socket would); asserts both give the same messages and the same
/// error, and returns that outcome.
pub fn decode_both_ways<D, E>(data: &[u8], mut new_decoder: impl FnMut() -> D) -> Decoded<E>
where
    D: FnMut(&mut BytesMut) -> Result<Option<Bytes>, E>,
    E: Debug + PartialEq,
{
    let whole = {
        let mut decode = new_decoder();
        let mut buf = BytesMut::from(data);
        drain(&mut decode, &mut buf, Vec::new())
    };
    let trickled = {
        let mut decode = new_decoder();
        let mut buf = BytesMut::new();
        let mut messages = Vec::new();
        let mut outcome = None;
        for &b in data {
            buf.extend_from_slice(&[b]);
            let step = drain(&mut decode, &mut buf, std::mem::take(&mut messages));
            if step.error.is_some() {
                outcome = Some(step);
                break;
            }
            messages = step.messages;
        }
        outcome.unwrap_or(Decoded {
            messages,
            error: None,
            leftover: buf.len(),
        })
    };
    assert_eq!(
        trickled.messages, whole.messages,
        "byte-at-a-time decoding found other messages than decoding all at once"
    );
    assert_eq!(
        trickled.error, whole.error,
        "byte-at-a-time decoding ended otherwise"
    );
    if whole.error.is_none() {
        assert_eq!(trickled.leftover, whole.leftover);
    }
    whole
}

fn drain<D, E>(decode: &mut D, buf: &mut BytesMut, mut messages: Vec<Bytes>) -> Decoded<E>
where
    D: FnMut(&mut BytesMut) -> Result<Option<Bytes>, E>,
{
    loop {
        match decode(buf) {
            Ok(Some(m)) => messages.push(m),
            Ok(None) => {
                return Decoded {
                    messages,
                    error: None,
                    leftover: buf.len(),
                }
            }
            Err(e) => {
                return Decoded {
                    messages,
                    error: Some(e),
                    leftover: buf.len(),
                }
            }
        }
    }
}
