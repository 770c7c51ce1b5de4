//! One whole message, decoded as sparkgate decodes it: a call from a client (header,
//! `validate_lengths`, [`Hs2Request::decode`], as the proxy does; and decoded even when
//! `validate_lengths` refuses it) or a reply from a driver (header, [`Hs2Response::decode`], as
//! the backend client does).
//!
//! Asserts: the header's offsets point inside the message at the seqid it reports; a decoded
//! request or response re-encodes to a message that decodes equal, with the same method and
//! seqid, and encoding that again gives the same bytes.

use hive_thrift::message::{validate_lengths, Hs2Request, Hs2Response, MessageHeader, MessageKind};

pub fn check(data: &[u8]) {
    let Ok(header) = MessageHeader::parse(data) else {
        return;
    };
    assert_eq!(header.body_offset, header.seqid_offset + 4);
    assert!(header.body_offset <= data.len());
    let at = header.seqid_offset;
    assert_eq!(data[at..at + 4], header.seqid.to_be_bytes());

    match header.kind {
        MessageKind::Call | MessageKind::Oneway => call(data, &header),
        MessageKind::Reply | MessageKind::Exception => reply(data, &header),
    }
}

fn call(data: &[u8], header: &MessageHeader) {
    if validate_lengths(data).is_err() {
        // The proxy stops here; decoding must be safe without that check too (lengths are
        // bounded as they are read).
        let _ = Hs2Request::decode(&header.name, &data[header.body_offset..]);
        return;
    }
    let Ok(Some(request)) = Hs2Request::decode(&header.name, &data[header.body_offset..]) else {
        return;
    };
    assert_eq!(request.method(), header.name);
    let mut encoded = Vec::new();
    request.encode_call(header.seqid, &mut encoded);
    validate_lengths(&encoded).expect("an encoded call passes validate_lengths");
    let again = MessageHeader::parse(&encoded).expect("an encoded call has a header");
    assert_eq!(
        (again.name.as_str(), again.kind, again.seqid),
        (header.name.as_str(), MessageKind::Call, header.seqid)
    );
    let decoded = Hs2Request::decode(&again.name, &encoded[again.body_offset..])
        .expect("an encoded call decodes")
        .expect("of a known method");
    assert_eq!(
        decoded, request,
        "request changed through encode and decode"
    );
    let mut twice = Vec::new();
    decoded.encode_call(header.seqid, &mut twice);
    assert_eq!(twice, encoded, "encoding is not deterministic");
}

fn reply(data: &[u8], header: &MessageHeader) {
    let Ok(Some(response)) = Hs2Response::decode(&header.name, data) else {
        return;
    };
    assert_eq!(response.method(), header.name);
    let _ = response.status();
    let mut encoded = Vec::new();
    response.encode_reply(header.seqid, &mut encoded);
    validate_lengths(&encoded).expect("an encoded reply passes validate_lengths");
    let again = MessageHeader::parse(&encoded).expect("an encoded reply has a header");
    assert_eq!(
        (again.name.as_str(), again.kind, again.seqid),
        (header.name.as_str(), MessageKind::Reply, header.seqid)
    );
    let decoded = Hs2Response::decode(&again.name, &encoded)
        .expect("an encoded reply decodes")
        .expect("of a known method");
    assert_eq!(
        decoded, response,
        "response changed through encode and decode"
    );
    let mut twice = Vec::new();
    decoded.encode_reply(header.seqid, &mut twice);
    assert_eq!(twice, encoded, "encoding is not deterministic");
}
