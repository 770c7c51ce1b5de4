//! SASL negotiation as HiveServer2 does it over TCP (Thrift's `TSaslTransport`), PLAIN only.
//!
//! Negotiation frames are `status(1) | length(4, BE) | payload`. The client sends `START` with
//! the mechanism name, then `OK` or `COMPLETE` with `authzid \0 user \0 password`; the server
//! answers `COMPLETE`, or `BAD`/`ERROR` with a message. Both sides are state machines over bytes.

use bytes::{Buf, BufMut, BytesMut};

use crate::error::SaslError;

/// Negotiation status bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SaslStatus {
    Start = 1,
    Ok = 2,
    Bad = 3,
    Error = 4,
    Complete = 5,
}

impl SaslStatus {
    fn from_byte(b: u8) -> Result<Self, SaslError> {
        Ok(match b {
            1 => Self::Start,
            2 => Self::Ok,
            3 => Self::Bad,
            4 => Self::Error,
            5 => Self::Complete,
            other => return Err(SaslError::UnexpectedStatus(other)),
        })
    }
}

/// Negotiation payloads are small (a mechanism name, a user and a password or token).
pub const DEFAULT_MAX_NEGOTIATION_FRAME: usize = 64 * 1024;

/// What a PLAIN client presented. `Debug` hides the password so it cannot reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub authzid: String,
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for PlainCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PlainCredentials")
            .field("authzid", &self.authzid)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

impl PlainCredentials {
    /// Parses `authzid \0 authcid \0 password` (RFC 4616).
    pub fn parse(payload: &[u8]) -> Result<Self, SaslError> {
        let mut parts = payload.split(|b| *b == 0);
        let (Some(authzid), Some(user), Some(password), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SaslError::MalformedPlain(
                "expected authzid, user and password separated by NUL",
            ));
        };
        let text = |b: &[u8], what| {
            std::str::from_utf8(b)
                .map(str::to_owned)
                .map_err(|_| SaslError::MalformedPlain(what))
        };
        let creds = Self {
            authzid: text(authzid, "authzid is not UTF-8")?,
            user: text(user, "user is not UTF-8")?,
            password: text(password, "password is not UTF-8")?,
        };
        if creds.user.is_empty() {
            return Err(SaslError::MalformedPlain("empty user name"));
        }
        Ok(creds)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out =
            Vec::with_capacity(self.authzid.len() + self.user.len() + self.password.len() + 2);
        out.extend_from_slice(self.authzid.as_bytes());
        out.push(0);
        out.extend_from_slice(self.user.as_bytes());
        out.push(0);
        out.extend_from_slice(self.password.as_bytes());
        out
    }
}

/// Appends one negotiation frame to `dst`.
pub fn encode_negotiation(status: SaslStatus, payload: &[u8], dst: &mut BytesMut) {
    dst.reserve(5 + payload.len());
    dst.put_u8(status as u8);
    dst.put_u32(payload.len() as u32);
    dst.extend_from_slice(payload);
}

/// Takes one negotiation frame off `src`, if it has fully arrived.
pub fn decode_negotiation(
    src: &mut BytesMut,
    max_payload: usize,
) -> Result<Option<(SaslStatus, BytesMut)>, SaslError> {
    if src.len() < 5 {
        return Ok(None);
    }
    let status = SaslStatus::from_byte(src[0])?;
    let len = u32::from_be_bytes([src[1], src[2], src[3], src[4]]) as usize;
    if len > max_payload {
        return Err(SaslError::TooLarge {
            size: len as u64,
            max: max_payload,
        });
    }
    if src.len() < 5 + len {
        return Ok(None);
    }
    src.advance(5);
    Ok(Some((status, src.split_to(len))))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    AwaitStart,
    AwaitResponse,
    Done,
}

/// The server side of a PLAIN negotiation. Feed it bytes until it yields the credentials; the
/// caller decides, then sends [`SaslServer::accept`] or [`SaslServer::refuse`].
#[derive(Debug)]
pub struct SaslServer {
    state: ServerState,
    max_payload: usize,
}

impl SaslServer {
    pub fn new(max_payload: usize) -> Self {
        Self {
            state: ServerState::AwaitStart,
            max_payload,
        }
    }

    /// Consumes negotiation frames from `src`. `Ok(Some)` once the client's PLAIN response is in;
    /// bytes after it (the first data frame, if the client did not wait) stay in `src`.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<PlainCredentials>, SaslError> {
        loop {
            match self.state {
                ServerState::AwaitStart => {
                    let Some((status, payload)) = decode_negotiation(src, self.max_payload)? else {
                        return Ok(None);
                    };
                    if status != SaslStatus::Start {
                        return Err(SaslError::UnexpectedStatus(status as u8));
                    }
                    if &payload[..] != b"PLAIN" {
                        return Err(SaslError::UnsupportedMechanism(
                            String::from_utf8_lossy(&payload).into_owned(),
                        ));
                    }
                    self.state = ServerState::AwaitResponse;
                }
                ServerState::AwaitResponse => {
                    let Some((status, payload)) = decode_negotiation(src, self.max_payload)? else {
                        return Ok(None);
                    };
                    match status {
                        SaslStatus::Ok | SaslStatus::Complete => {
                            self.state = ServerState::Done;
                            return PlainCredentials::parse(&payload).map(Some);
                        }
                        SaslStatus::Bad | SaslStatus::Error => {
                            return Err(SaslError::Refused(
                                String::from_utf8_lossy(&payload).into_owned(),
                            ))
                        }
                        other => return Err(SaslError::UnexpectedStatus(other as u8)),
                    }
                }
                ServerState::Done => return Ok(None),
            }
        }
    }

    /// The frame that tells the client it is authenticated.
    pub fn accept(dst: &mut BytesMut) {
        encode_negotiation(SaslStatus::Complete, b"", dst);
    }

    /// The frame that tells the client why it is not; the connection closes after it.
    pub fn refuse(message: &str, dst: &mut BytesMut) {
        encode_negotiation(SaslStatus::Bad, message.as_bytes(), dst);
    }
}

/// The client side of a PLAIN negotiation.
#[derive(Debug)]
pub struct SaslClient {
    max_payload: usize,
}

impl SaslClient {
    /// Writes the client's whole side of the negotiation (START + response) into `dst`.
    pub fn start(credentials: &PlainCredentials, max_payload: usize, dst: &mut BytesMut) -> Self {
        encode_negotiation(SaslStatus::Start, b"PLAIN", dst);
        encode_negotiation(SaslStatus::Complete, &credentials.encode(), dst);
        Self { max_payload }
    }

    /// Reads the server's verdict: `Ok(Some(()))` when negotiation completed.
    pub fn decode(&mut self, src: &mut BytesMut) -> Result<Option<()>, SaslError> {
        let Some((status, payload)) = decode_negotiation(src, self.max_payload)? else {
            return Ok(None);
        };
        match status {
            SaslStatus::Complete => Ok(Some(())),
            SaslStatus::Bad | SaslStatus::Error => Err(SaslError::Refused(
                String::from_utf8_lossy(&payload).into_owned(),
            )),
            other => Err(SaslError::UnexpectedStatus(other as u8)),
        }
    }
}

#[cfg(test)]
mod tests;
