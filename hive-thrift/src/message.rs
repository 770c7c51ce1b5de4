//! Thrift messages of the TCLIService: headers, the typed request, replies and exceptions.
//!
//! A message is `header | body`; the body of a call is the method's args struct (`{1: req}`),
//! the body of a reply its result struct (`{0: resp}`). [`Hs2Request`] is decoded once per call
//! so that nothing above this layer matches on method names.

use thrift::protocol::{
    TBinaryOutputProtocol, TFieldIdentifier, TInputProtocol, TOutputProtocol, TSerializable,
    TStructIdentifier, TType,
};

use bounded::BoundedInput;

use crate::error::{DecodeError, FrameError};
use crate::generated::tcliservice as t;
use crate::scan::MessageScanner;

/// Message types of the binary protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageKind {
    Call = 1,
    Reply = 2,
    Exception = 3,
    Oneway = 4,
}

impl MessageKind {
    fn from_byte(b: u8) -> Result<Self, FrameError> {
        Ok(match b {
            1 => Self::Call,
            2 => Self::Reply,
            3 => Self::Exception,
            4 => Self::Oneway,
            other => {
                return Err(FrameError::Malformed(format!(
                    "unknown message type {other}"
                )))
            }
        })
    }
}

/// `TApplicationException` type for a method the server does not implement.
pub const UNKNOWN_METHOD: i32 = 1;
/// `TApplicationException` type for a failure inside the server.
pub const INTERNAL_ERROR: i32 = 6;
/// `TApplicationException` type for arguments that could not be decoded.
pub const PROTOCOL_ERROR: i32 = 7;

/// The parsed front of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageHeader {
    pub name: String,
    pub kind: MessageKind,
    pub seqid: i32,
    /// Where the seqid sits, so a reply can be passed through with only that rewritten.
    pub seqid_offset: usize,
    /// Where the args/result struct starts.
    pub body_offset: usize,
}

impl MessageHeader {
    /// Parses the header of a whole message (strict or old non-strict form).
    pub fn parse(msg: &[u8]) -> Result<Self, FrameError> {
        let short = || FrameError::Malformed("message shorter than its header".into());
        let be_u32 = |at: usize| -> Result<u32, FrameError> {
            msg.get(at..at + 4)
                .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or_else(short)
        };
        let first = be_u32(0)?;
        let (name_at, name_len, kind, seqid_offset) = if first & 0x8000_0000 != 0 {
            if first & 0xffff_0000 != 0x8001_0000 {
                return Err(FrameError::Malformed(format!(
                    "bad version word {first:#010x}"
                )));
            }
            let name_len = be_u32(4)? as usize;
            (8, name_len, (first & 0xff) as u8, 8 + name_len)
        } else {
            let name_len = first as usize;
            let kind = *msg.get(4 + name_len).ok_or_else(short)?;
            (4, name_len, kind, 4 + name_len + 1)
        };
        let name = msg.get(name_at..name_at + name_len).ok_or_else(short)?;
        let name = std::str::from_utf8(name)
            .map_err(|_| FrameError::Malformed("method name is not UTF-8".into()))?
            .to_owned();
        let seqid = be_u32(seqid_offset)? as i32;
        Ok(Self {
            name,
            kind: MessageKind::from_byte(kind)?,
            seqid,
            seqid_offset,
            body_offset: seqid_offset + 4,
        })
    }
}

/// The status of a successful call.
pub fn success_status() -> t::TStatus {
    t::TStatus {
        status_code: t::TStatusCode::SUCCESS_STATUS,
        info_messages: None,
        sql_state: None,
        error_code: None,
        error_message: None,
    }
}

/// Checks every length inside `msg` against the message's own size, by the wire types the
/// message declares. Decoding bounds each length again as it reads it (`message/bounded.rs`),
/// as the generated code reads a field by its id whatever wire type it carries.
pub fn validate_lengths(msg: &[u8]) -> Result<(), FrameError> {
    match MessageScanner::new(msg.len()).scan(msg)? {
        Some(_) => Ok(()),
        None => Err(FrameError::Malformed("message ends early".into())),
    }
}

/// Reads field `id` of the struct at the front of `body`, skipping others.
fn read_wrapped<T: TSerializable>(body: &[u8], id: i16) -> Result<Option<T>, DecodeError> {
    let mut prot = BoundedInput::new(body);
    prot.read_struct_begin()?;
    let mut found = None;
    loop {
        let field = prot.read_field_begin()?;
        if field.field_type == TType::Stop {
            break;
        }
        if field.id == Some(id) && found.is_none() {
            found = Some(T::read_from_in_protocol(&mut prot)?);
        } else {
            prot.skip(field.field_type)?;
        }
        prot.read_field_end()?;
    }
    prot.read_struct_end()?;
    Ok(found)
}

fn write_header(
    prot: &mut dyn TOutputProtocol,
    name: &str,
    kind: MessageKind,
    seqid: i32,
) -> thrift::Result<()> {
    let kind = match kind {
        MessageKind::Call => thrift::protocol::TMessageType::Call,
        MessageKind::Reply => thrift::protocol::TMessageType::Reply,
        MessageKind::Exception => thrift::protocol::TMessageType::Exception,
        MessageKind::Oneway => thrift::protocol::TMessageType::OneWay,
    };
    prot.write_message_begin(&thrift::protocol::TMessageIdentifier::new(
        name, kind, seqid,
    ))
}

/// Encodes a message whose body is a struct holding `value` as field `id`.
fn encode_wrapped<T: TSerializable>(
    name: &str,
    kind: MessageKind,
    seqid: i32,
    id: i16,
    value: &T,
    out: &mut Vec<u8>,
) -> thrift::Result<()> {
    let mut prot = TBinaryOutputProtocol::new(out, true);
    write_header(&mut prot, name, kind, seqid)?;
    prot.write_struct_begin(&TStructIdentifier::new("wrapper"))?;
    prot.write_field_begin(&TFieldIdentifier::new("value", TType::Struct, id))?;
    value.write_to_out_protocol(&mut prot)?;
    prot.write_field_end()?;
    prot.write_field_stop()?;
    prot.write_struct_end()?;
    prot.write_message_end()
}

/// Encodes a successful reply to `name`.
pub fn encode_reply<T: TSerializable>(name: &str, seqid: i32, value: &T, out: &mut Vec<u8>) {
    // Writing into a Vec cannot fail.
    encode_wrapped(name, MessageKind::Reply, seqid, 0, value, out)
        .expect("encoding into memory is infallible");
}

/// Encodes a `TApplicationException` reply, e.g. [`UNKNOWN_METHOD`] for legacy `GetLog`.
pub fn encode_application_exception(
    name: &str,
    seqid: i32,
    kind: i32,
    message: &str,
    out: &mut Vec<u8>,
) {
    let mut prot = TBinaryOutputProtocol::new(out, true);
    let write = |prot: &mut TBinaryOutputProtocol<&mut Vec<u8>>| -> thrift::Result<()> {
        write_header(prot, name, MessageKind::Exception, seqid)?;
        prot.write_struct_begin(&TStructIdentifier::new("TApplicationException"))?;
        prot.write_field_begin(&TFieldIdentifier::new("message", TType::String, 1))?;
        prot.write_string(message)?;
        prot.write_field_end()?;
        prot.write_field_begin(&TFieldIdentifier::new("type", TType::I32, 2))?;
        prot.write_i32(kind)?;
        prot.write_field_end()?;
        prot.write_field_stop()?;
        prot.write_struct_end()?;
        prot.write_message_end()
    };
    write(&mut prot).expect("encoding into memory is infallible");
}

/// Decodes a reply message to a call: the result, or the peer's application exception.
///
/// Checks every length against the message first ([`validate_lengths`]), as for calls: the
/// Thrift runtime allocates whatever a string length or list count claims, so a driver's reply
/// with a bad length would otherwise panic (negative) or abort the process (huge).
pub fn decode_reply<T: TSerializable>(msg: &[u8]) -> Result<T, DecodeError> {
    validate_lengths(msg)?;
    let header = MessageHeader::parse(msg)?;
    let body = &msg[header.body_offset..];
    match header.kind {
        MessageKind::Reply => read_wrapped(body, 0)?.ok_or(DecodeError::MissingResult),
        MessageKind::Exception => {
            let mut prot = BoundedInput::new(body);
            let exception = thrift::Error::read_application_error_from_in_protocol(&mut prot)?;
            Err(DecodeError::ApplicationException(format!(
                "{} ({:?})",
                exception.message, exception.kind
            )))
        }
        other => Err(DecodeError::UnexpectedMessageType(other as u8, "reply")),
    }
}

/// Where a response keeps its [`t::TStatus`].
trait ResponseStatus {
    fn status(&self) -> &t::TStatus;
}

macro_rules! response_status_field {
    ($( $resp:ident ),* $(,)?) => {
        $( impl ResponseStatus for t::$resp {
            fn status(&self) -> &t::TStatus {
                &self.status
            }
        } )*
    };
}

response_status_field!(
    TOpenSessionResp,
    TCloseSessionResp,
    TGetInfoResp,
    TExecuteStatementResp,
    TGetTypeInfoResp,
    TGetCatalogsResp,
    TGetSchemasResp,
    TGetTablesResp,
    TGetTableTypesResp,
    TGetColumnsResp,
    TGetFunctionsResp,
    TGetPrimaryKeysResp,
    TGetCrossReferenceResp,
    TGetOperationStatusResp,
    TCancelOperationResp,
    TCloseOperationResp,
    TGetResultSetMetadataResp,
    TFetchResultsResp,
    TGetDelegationTokenResp,
    TCancelDelegationTokenResp,
    TRenewDelegationTokenResp,
    TSetClientInfoResp,
);

/// `TGetQueryIdResp` carries only the query id.
impl ResponseStatus for t::TGetQueryIdResp {
    fn status(&self) -> &t::TStatus {
        const SUCCESS: t::TStatus = t::TStatus {
            status_code: t::TStatusCode::SUCCESS_STATUS,
            info_messages: None,
            sql_state: None,
            error_code: None,
            error_message: None,
        };
        &SUCCESS
    }
}

/// The session handle a call of this kind names (`session`: it names one; `starts`: it names
/// one and starts an operation in it).
macro_rules! session_handle_of {
    (session, $r:ident) => {
        Some(&mut $r.session_handle)
    };
    (starts, $r:ident) => {
        Some(&mut $r.session_handle)
    };
    ($other:ident, $r:ident) => {{
        let _ = $r;
        None
    }};
}

/// The operation handle a call of this kind names.
macro_rules! operation_handle_of {
    (operation, $r:ident) => {
        Some(&mut $r.operation_handle)
    };
    ($other:ident, $r:ident) => {{
        let _ = $r;
        None
    }};
}

/// The operation handle the reply to a call of this kind carries.
macro_rules! new_operation_of {
    (starts, $r:ident) => {
        Some(&mut $r.operation_handle)
    };
    ($other:ident, $r:ident) => {{
        let _ = $r;
        None
    }};
}

macro_rules! is_kind {
    (starts, starts) => {
        true
    };
    ($a:ident, $b:ident) => {
        false
    };
}

macro_rules! hs2_methods {
    ($( $variant:ident => $req:ident, $resp:ident, names $names:ident,
        error |$r:pat_param, $s:ident| { $($body:tt)* }; )*) => {
        /// One decoded TCLIService call.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Hs2Request {
            $( $variant(t::$req), )*
        }

        /// One decoded TCLIService reply.
        #[derive(Debug, Clone, PartialEq)]
        pub enum Hs2Response {
            $( $variant(t::$resp), )*
        }

        impl Hs2Request {
            /// The TCLIService method name, as on the wire.
            pub fn method(&self) -> &'static str {
                match self { $( Self::$variant(_) => stringify!($variant), )* }
            }

            /// Decodes the args of method `name`; `Ok(None)` for a method TCLIService lacks.
            pub fn decode(name: &str, body: &[u8]) -> Result<Option<Self>, DecodeError> {
                let request = match name {
                    $( stringify!($variant) => Self::$variant(
                        read_wrapped(body, 1)?.ok_or(DecodeError::MissingResult)?,
                    ), )*
                    _ => return Ok(None),
                };
                Ok(Some(request))
            }

            /// Encodes this request as a call message.
            pub fn encode_call(&self, seqid: i32, out: &mut Vec<u8>) {
                let result = match self {
                    $( Self::$variant(req) => encode_wrapped(
                        stringify!($variant), MessageKind::Call, seqid, 1, req, out,
                    ), )*
                };
                result.expect("encoding into memory is infallible");
            }

            /// The session this call names, if it names one (OpenSession and the calls on an
            /// operation do not).
            pub fn session_handle_mut(&mut self) -> Option<&mut t::TSessionHandle> {
                match self { $( Self::$variant(r) => session_handle_of!($names, r), )* }
            }

            /// The operation this call names, if it names one.
            pub fn operation_handle_mut(&mut self) -> Option<&mut t::TOperationHandle> {
                match self { $( Self::$variant(r) => operation_handle_of!($names, r), )* }
            }

            /// Whether this call starts an operation (ExecuteStatement and the metadata calls).
            pub fn starts_operation(&self) -> bool {
                match self { $( Self::$variant(_) => is_kind!($names, starts), )* }
            }
        }

        impl Hs2Response {
            pub fn method(&self) -> &'static str {
                match self { $( Self::$variant(_) => stringify!($variant), )* }
            }

            /// Encodes this response as a reply message.
            pub fn encode_reply(&self, seqid: i32, out: &mut Vec<u8>) {
                match self {
                    $( Self::$variant(resp) => encode_reply(stringify!($variant), seqid, resp, out), )*
                }
            }

            /// Decodes a reply to method `name`; `Ok(None)` for a method TCLIService lacks.
            /// ([`Hs2Response::decode_for`] when the request is at hand.)
            pub fn decode(name: &str, msg: &[u8]) -> Result<Option<Self>, DecodeError> {
                Ok(Some(match name {
                    $( stringify!($variant) => Self::$variant(decode_reply(msg)?), )*
                    _ => return Ok(None),
                }))
            }

            /// Decodes the reply to `request` (same method).
            pub fn decode_for(request: &Hs2Request, msg: &[u8]) -> Result<Self, DecodeError> {
                Ok(match request {
                    $( Hs2Request::$variant(_) => Self::$variant(decode_reply(msg)?), )*
                })
            }

            /// The response's status. `GetQueryId` has none on the wire (its failures are
            /// application exceptions), so a decoded one counts as a success.
            pub fn status(&self) -> &t::TStatus {
                match self { $( Self::$variant(resp) => resp.status(), )* }
            }

            /// The operation a reply to an operation-starting call carries.
            pub fn new_operation_mut(&mut self) -> Option<&mut Option<t::TOperationHandle>> {
                match self { $( Self::$variant(r) => new_operation_of!($names, r), )* }
            }

            /// A reply of `request`'s type that carries only `status` (and what the type
            /// requires). `GetQueryId` has no status: send an application exception instead.
            pub fn error_for(request: &Hs2Request, status: t::TStatus) -> Self {
                match request {
                    $( Hs2Request::$variant($r) => {
                        let $s = status;
                        Self::$variant(t::$resp { $($body)* })
                    } )*
                }
            }
        }
    };
}

/// The newest protocol version these types carry; newer client requests are capped to it.
pub const NEWEST_PROTOCOL: t::TProtocolVersion = t::TProtocolVersion::HIVE_CLI_SERVICE_PROTOCOL_V11;

/// A GetOperationStatus reply with only a status and, optionally, a state.
pub fn operation_status_reply(
    status: t::TStatus,
    state: Option<t::TOperationState>,
) -> t::TGetOperationStatusResp {
    t::TGetOperationStatusResp {
        status,
        operation_state: state,
        sql_state: None,
        error_code: None,
        error_message: None,
        task_status: None,
        operation_started: None,
        operation_completed: None,
        has_result_set: None,
        progress_update_response: None,
        num_modified_rows: None,
    }
}

// The one table of TCLIService methods: request and reply types, which handle a call names
// (`none`, `session`, `starts`: names a session and starts an operation, `operation`), and the
// fields of an error reply besides its status.
hs2_methods! {
    OpenSession => TOpenSessionReq, TOpenSessionResp, names none,
        error |req, status| {
            status,
            server_protocol_version: req.client_protocol.min(NEWEST_PROTOCOL),
            session_handle: None,
            configuration: None,
        };
    CloseSession => TCloseSessionReq, TCloseSessionResp, names session,
        error |_, status| { status };
    GetInfo => TGetInfoReq, TGetInfoResp, names session,
        error |_, status| { status, info_value: t::TGetInfoValue::StringValue(String::new()) };
    ExecuteStatement => TExecuteStatementReq, TExecuteStatementResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetTypeInfo => TGetTypeInfoReq, TGetTypeInfoResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetCatalogs => TGetCatalogsReq, TGetCatalogsResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetSchemas => TGetSchemasReq, TGetSchemasResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetTables => TGetTablesReq, TGetTablesResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetTableTypes => TGetTableTypesReq, TGetTableTypesResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetColumns => TGetColumnsReq, TGetColumnsResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetFunctions => TGetFunctionsReq, TGetFunctionsResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetPrimaryKeys => TGetPrimaryKeysReq, TGetPrimaryKeysResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetCrossReference => TGetCrossReferenceReq, TGetCrossReferenceResp, names starts,
        error |_, status| { status, operation_handle: None };
    GetOperationStatus => TGetOperationStatusReq, TGetOperationStatusResp, names operation,
        error |_, status| { ..operation_status_reply(status, None) };
    CancelOperation => TCancelOperationReq, TCancelOperationResp, names operation,
        error |_, status| { status };
    CloseOperation => TCloseOperationReq, TCloseOperationResp, names operation,
        error |_, status| { status };
    GetResultSetMetadata => TGetResultSetMetadataReq, TGetResultSetMetadataResp, names operation,
        error |_, status| { status, schema: None };
    FetchResults => TFetchResultsReq, TFetchResultsResp, names operation,
        error |_, status| { status, has_more_rows: None, results: None };
    GetDelegationToken => TGetDelegationTokenReq, TGetDelegationTokenResp, names session,
        error |_, status| { status, delegation_token: None };
    CancelDelegationToken => TCancelDelegationTokenReq, TCancelDelegationTokenResp, names session,
        error |_, status| { status };
    RenewDelegationToken => TRenewDelegationTokenReq, TRenewDelegationTokenResp, names session,
        error |_, status| { status };
    GetQueryId => TGetQueryIdReq, TGetQueryIdResp, names operation,
        error |_, _status| { query_id: String::new() };
    SetClientInfo => TSetClientInfoReq, TSetClientInfoResp, names session,
        error |_, status| { status };
}

mod bounded;
mod rows;
pub use rows::fetch_row_count;
#[cfg(test)]
mod tests;
