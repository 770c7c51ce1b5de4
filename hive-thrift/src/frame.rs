//! Whole Thrift messages out of a byte stream: the two HiveServer2 binary transports.
//!
//! * [`SaslFrameCodec`]: after SASL negotiation every message travels as `length(4, BE) | payload`.
//! * [`RawMessageCodec`]: NOSASL, the bare binary protocol; boundaries come from [`MessageScanner`].
//!
//! Both take and return [`bytes`] buffers and never touch a socket. An incomplete message is
//! `Ok(None)`; a message over the size limit is an error as soon as its size is known.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::FrameError;
use crate::scan::MessageScanner;

/// Default cap on one message: large enough for big FetchResults batches, small enough that a
/// hostile length cannot make us allocate without bound.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 256 * 1024 * 1024;

/// Which wire form messages take after the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// `length | payload` frames (SASL PLAIN without a security layer).
    Sasl,
    /// Bare binary protocol messages (NOSASL).
    Raw,
}

/// Splits a byte stream into messages of either framing and frames outgoing messages.
#[derive(Debug)]
pub enum MessageCodec {
    Sasl(SaslFrameCodec),
    Raw(RawMessageCodec),
}

impl MessageCodec {
    pub fn new(framing: Framing, max_message_size: usize) -> Self {
        match framing {
            Framing::Sasl => Self::Sasl(SaslFrameCodec::new(max_message_size)),
            Framing::Raw => Self::Raw(RawMessageCodec::new(max_message_size)),
        }
    }

    /// Takes one whole message off the front of `src`, if it has arrived.
    pub fn decode_message(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self {
            Self::Sasl(c) => c.decode_message(src),
            Self::Raw(c) => c.decode_message(src),
        }
    }

    /// Appends `message` to `dst` in this codec's framing.
    pub fn encode_message(&self, message: &[u8], dst: &mut BytesMut) -> Result<(), FrameError> {
        self.encode_parts(&[message], dst)
    }

    /// Appends one message given in pieces (e.g. a passed-through reply with a new seqid) to
    /// `dst`, copying each piece once.
    pub fn encode_parts(&self, parts: &[&[u8]], dst: &mut BytesMut) -> Result<(), FrameError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        match self {
            Self::Sasl(c) => {
                c.check_size(len)?;
                dst.reserve(4 + len);
                dst.put_u32(len as u32);
            }
            Self::Raw(_) => dst.reserve(len),
        }
        for part in parts {
            dst.extend_from_slice(part);
        }
        Ok(())
    }
}

/// `length(4 bytes, big-endian) | payload` frames.
#[derive(Debug, Clone)]
pub struct SaslFrameCodec {
    max_message_size: usize,
}

impl SaslFrameCodec {
    pub fn new(max_message_size: usize) -> Self {
        Self { max_message_size }
    }

    pub fn decode_message(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        if src.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_be_bytes([src[0], src[1], src[2], src[3]]) as usize;
        if len > self.max_message_size {
            return Err(FrameError::TooLarge {
                size: len as u64,
                max: self.max_message_size,
            });
        }
        if src.len() < 4 + len {
            src.reserve(4 + len - src.len());
            return Ok(None);
        }
        src.advance(4);
        Ok(Some(src.split_to(len).freeze()))
    }

    fn check_size(&self, len: usize) -> Result<(), FrameError> {
        if len > self.max_message_size {
            return Err(FrameError::TooLarge {
                size: len as u64,
                max: self.max_message_size,
            });
        }
        Ok(())
    }
}

/// Bare binary-protocol messages (NOSASL).
#[derive(Debug)]
pub struct RawMessageCodec {
    scanner: MessageScanner,
}

impl RawMessageCodec {
    pub fn new(max_message_size: usize) -> Self {
        Self {
            scanner: MessageScanner::new(max_message_size),
        }
    }

    pub fn decode_message(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FrameError> {
        match self.scanner.scan(src)? {
            Some(len) => {
                self.scanner.reset();
                Ok(Some(src.split_to(len).freeze()))
            }
            None => Ok(None),
        }
    }
}

#[cfg(feature = "tokio")]
mod tokio_codec {
    //! `tokio_util::codec` adapters, so a socket becomes a stream of messages.
    use super::*;
    use tokio_util::codec::{Decoder, Encoder};

    /// Errors of a framed socket: the bytes were bad, or the socket failed.
    #[derive(Debug, thiserror::Error)]
    pub enum FramedError {
        #[error(transparent)]
        Frame(#[from] FrameError),
        #[error(transparent)]
        Io(#[from] std::io::Error),
    }

    impl Decoder for MessageCodec {
        type Item = Bytes;
        type Error = FramedError;
        fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Bytes>, FramedError> {
            Ok(self.decode_message(src)?)
        }
    }

    impl<T: AsRef<[u8]>> Encoder<T> for MessageCodec {
        type Error = FramedError;
        fn encode(&mut self, item: T, dst: &mut BytesMut) -> Result<(), FramedError> {
            Ok(self.encode_message(item.as_ref(), dst)?)
        }
    }
}

#[cfg(feature = "tokio")]
pub use tokio_codec::FramedError;
