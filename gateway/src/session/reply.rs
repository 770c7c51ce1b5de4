//! Replies: framing for the client's writer, and error replies of each method's own type.

use bytes::{Bytes, BytesMut};
use hive_thrift::frame::{FramedError, MessageCodec};
use hive_thrift::message::{encode_application_exception, Hs2Response, MessageHeader};
use hive_thrift::FrameError;

/// A reply ready to be framed and written to the client.
#[derive(Debug)]
pub enum Reply {
    /// Encoded by sparkgate.
    Encoded(Vec<u8>),
    /// The driver's reply bytes, passed on with only the seqid rewritten (FetchResults).
    Passthrough {
        message: Bytes,
        header: MessageHeader,
        seqid: i32,
    },
}

impl Reply {
    /// The whole message (its seqid not yet the client's for a passthrough).
    pub fn bytes(&self) -> &[u8] {
        match self {
            Reply::Encoded(v) => v,
            Reply::Passthrough { message, .. } => message,
        }
    }

    /// Frames this reply into `dst`, with the client's seqid in place.
    pub fn encode(&self, codec: &MessageCodec, dst: &mut BytesMut) -> Result<(), FrameError> {
        match self {
            Reply::Encoded(v) => codec.encode_message(v, dst),
            Reply::Passthrough {
                message,
                header,
                seqid,
            } => {
                let at = header.seqid_offset;
                codec.encode_parts(
                    &[&message[..at], &seqid.to_be_bytes(), &message[at + 4..]],
                    dst,
                )
            }
        }
    }
}

/// Frames [`Reply`]s for the client connection's writer.
pub struct ReplyEncoder(pub MessageCodec);

impl tokio_util::codec::Encoder<Reply> for ReplyEncoder {
    type Error = FramedError;
    fn encode(&mut self, reply: Reply, dst: &mut BytesMut) -> Result<(), FramedError> {
        Ok(reply.encode(&self.0, dst)?)
    }
}

pub(super) fn encoded(response: Hs2Response, seqid: i32) -> Reply {
    let mut out = Vec::new();
    response.encode_reply(seqid, &mut out);
    Reply::Encoded(out)
}

pub(super) fn exception(header: &MessageHeader, kind: i32, text: &str) -> Reply {
    let mut out = Vec::new();
    encode_application_exception(&header.name, header.seqid, kind, text, &mut out);
    Reply::Encoded(out)
}
