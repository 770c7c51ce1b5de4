//! Replies: framing for the client's writer, and error replies of each method's own type.

use bytes::{Bytes, BytesMut};
use hive_thrift::frame::{FramedError, MessageCodec};
use hive_thrift::generated::tcliservice as t;
use hive_thrift::message::{encode_application_exception, Hs2Request, Hs2Response, MessageHeader};
use hive_thrift::FrameError;

use super::MAX_PROTOCOL;

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

/// A GetOperationStatus response with only a status and, optionally, a state.
pub fn operation_status_response(
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

/// A response of the request's type carrying only an error status.
pub fn error_response(request: &Hs2Request, status: t::TStatus) -> Hs2Response {
    use Hs2Request as Q;
    use Hs2Response as R;
    match request {
        Q::OpenSession(req) => R::OpenSession(t::TOpenSessionResp {
            status,
            server_protocol_version: req.client_protocol.min(MAX_PROTOCOL),
            session_handle: None,
            configuration: None,
        }),
        Q::CloseSession(_) => R::CloseSession(t::TCloseSessionResp { status }),
        Q::GetInfo(_) => R::GetInfo(t::TGetInfoResp {
            status,
            info_value: t::TGetInfoValue::StringValue(String::new()),
        }),
        Q::ExecuteStatement(_) => R::ExecuteStatement(t::TExecuteStatementResp {
            status,
            operation_handle: None,
        }),
        Q::GetTypeInfo(_) => R::GetTypeInfo(t::TGetTypeInfoResp {
            status,
            operation_handle: None,
        }),
        Q::GetCatalogs(_) => R::GetCatalogs(t::TGetCatalogsResp {
            status,
            operation_handle: None,
        }),
        Q::GetSchemas(_) => R::GetSchemas(t::TGetSchemasResp {
            status,
            operation_handle: None,
        }),
        Q::GetTables(_) => R::GetTables(t::TGetTablesResp {
            status,
            operation_handle: None,
        }),
        Q::GetTableTypes(_) => R::GetTableTypes(t::TGetTableTypesResp {
            status,
            operation_handle: None,
        }),
        Q::GetColumns(_) => R::GetColumns(t::TGetColumnsResp {
            status,
            operation_handle: None,
        }),
        Q::GetFunctions(_) => R::GetFunctions(t::TGetFunctionsResp {
            status,
            operation_handle: None,
        }),
        Q::GetPrimaryKeys(_) => R::GetPrimaryKeys(t::TGetPrimaryKeysResp {
            status,
            operation_handle: None,
        }),
        Q::GetCrossReference(_) => R::GetCrossReference(t::TGetCrossReferenceResp {
            status,
            operation_handle: None,
        }),
        Q::GetOperationStatus(_) => R::GetOperationStatus(operation_status_response(status, None)),
        Q::CancelOperation(_) => R::CancelOperation(t::TCancelOperationResp { status }),
        Q::CloseOperation(_) => R::CloseOperation(t::TCloseOperationResp { status }),
        Q::GetResultSetMetadata(_) => R::GetResultSetMetadata(t::TGetResultSetMetadataResp {
            status,
            schema: None,
        }),
        Q::FetchResults(_) => R::FetchResults(t::TFetchResultsResp {
            status,
            has_more_rows: None,
            results: None,
        }),
        Q::GetDelegationToken(_) => R::GetDelegationToken(t::TGetDelegationTokenResp {
            status,
            delegation_token: None,
        }),
        Q::CancelDelegationToken(_) => {
            R::CancelDelegationToken(t::TCancelDelegationTokenResp { status })
        }
        Q::RenewDelegationToken(_) => {
            R::RenewDelegationToken(t::TRenewDelegationTokenResp { status })
        }
        // No status on the wire: `handle` answers failed GetQueryId calls with an exception.
        Q::GetQueryId(_) => R::GetQueryId(t::TGetQueryIdResp {
            query_id: String::new(),
        }),
        Q::SetClientInfo(_) => R::SetClientInfo(t::TSetClientInfoResp { status }),
    }
}
