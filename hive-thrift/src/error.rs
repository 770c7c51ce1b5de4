//! Errors of the protocol layer.

use thiserror::Error;

/// A byte stream that is not a well-formed, acceptably sized message.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// `size`: a frame's declared length, or, from the NOSASL scanner, how far into the message
    /// it found the limit passed (a lower bound of the message's size).
    #[error("message of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: u64, max: usize },
    #[error("malformed message: {0}")]
    Malformed(String),
}

/// A SASL negotiation that cannot go on.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum SaslError {
    #[error("unsupported SASL mechanism {0:?} (only PLAIN is supported)")]
    UnsupportedMechanism(String),
    #[error("unexpected SASL status byte {0} during negotiation")]
    UnexpectedStatus(u8),
    #[error("malformed SASL PLAIN response: {0}")]
    MalformedPlain(&'static str),
    #[error("SASL negotiation frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge { size: u64, max: usize },
    #[error("peer refused SASL negotiation: {0}")]
    Refused(String),
}

/// A message whose bytes are complete but whose content cannot be used.
#[derive(Debug, Error)]
pub enum DecodeError {
    #[error(transparent)]
    Frame(#[from] FrameError),
    #[error("thrift decode: {0}")]
    Thrift(#[from] thrift::Error),
    #[error("unexpected message type {0} (expected {1})")]
    UnexpectedMessageType(u8, &'static str),
    #[error("peer answered with an application exception: {0}")]
    ApplicationException(String),
    #[error("reply has no result")]
    MissingResult,
}
