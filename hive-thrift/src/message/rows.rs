//! How many rows a FetchResults reply carries, read from the list headers alone: the gateway
//! passes result bytes through undecoded, yet counts rows for its audit log and usage figures.

use thrift::protocol::{TInputProtocol, TType};

use super::bounded::BoundedInput;
use super::{MessageHeader, MessageKind};

/// The rows in a FetchResults reply (`None`: not a successful reply with results). Reads
/// the row list's size (row-based sets) or the first column's value count (columnar sets),
/// skipping everything else; cost is independent of the values.
pub fn fetch_row_count(msg: &[u8]) -> Option<u64> {
    let header = MessageHeader::parse(msg).ok()?;
    if header.kind != MessageKind::Reply {
        return None;
    }
    let mut prot = BoundedInput::new(&msg[header.body_offset..]);
    // The result struct's field 0, the TFetchResultsResp.
    enter_field(&mut prot, 0, TType::Struct)?;
    // Its field 3, the TRowSet.
    enter_field(&mut prot, 3, TType::Struct)?;
    prot.read_struct_begin().ok()?;
    loop {
        let field = prot.read_field_begin().ok()?;
        match (field.field_type, field.id) {
            (TType::Stop, _) => return Some(0),
            (TType::List, Some(2)) => {
                let rows = prot.read_list_begin().ok()?.size;
                if rows > 0 {
                    return u64::try_from(rows).ok();
                }
                prot.read_list_end().ok()?;
            }
            (TType::List, Some(3)) => {
                let columns = prot.read_list_begin().ok()?;
                if columns.size == 0 {
                    return Some(0);
                }
                // TColumn is a union: one field, a struct whose field 1 is the value list.
                prot.read_struct_begin().ok()?;
                let typed = prot.read_field_begin().ok()?;
                if typed.field_type != TType::Struct {
                    return None;
                }
                enter_field(&mut prot, 1, TType::List)?;
                return u64::try_from(prot.read_list_begin().ok()?.size).ok();
            }
            (other, _) => prot.skip(other).ok()?,
        }
        prot.read_field_end().ok()?;
    }
}

/// Reads a struct's fields up to field `id` of type `kind`, skipping the others; leaves the
/// input at that field's value.
fn enter_field(prot: &mut BoundedInput<'_>, id: i16, kind: TType) -> Option<()> {
    prot.read_struct_begin().ok()?;
    loop {
        let field = prot.read_field_begin().ok()?;
        if field.field_type == TType::Stop {
            return None;
        }
        if field.id == Some(id) && field.field_type == kind {
            return Some(());
        }
        prot.skip(field.field_type).ok()?;
        prot.read_field_end().ok()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generated::tcliservice as t;
    use crate::message::{success_status, Hs2Response};

    fn reply(results: Option<t::TRowSet>) -> Vec<u8> {
        let resp = t::TFetchResultsResp {
            status: success_status(),
            has_more_rows: Some(false),
            results,
        };
        let mut out = Vec::new();
        Hs2Response::FetchResults(resp).encode_reply(7, &mut out);
        out
    }

    fn rowset(columns: Option<Vec<t::TColumn>>, rows: Vec<t::TRow>) -> t::TRowSet {
        t::TRowSet {
            start_row_offset: 0,
            rows,
            columns,
            binary_columns: None,
            column_count: None,
        }
    }

    #[test]
    fn counts_columnar_and_row_based_results() {
        let strings = t::TColumn::StringVal(t::TStringColumn {
            values: vec!["a".into(), "b".into(), "c".into()],
            nulls: vec![0],
        });
        let ints = t::TColumn::I32Val(t::TI32Column {
            values: vec![1, 2, 3],
            nulls: vec![0],
        });
        let msg = reply(Some(rowset(Some(vec![ints, strings]), Vec::new())));
        assert_eq!(fetch_row_count(&msg), Some(3));
        let row = t::TRow {
            col_vals: vec![t::TColumnValue::StringVal(t::TStringValue { value: None })],
        };
        let msg = reply(Some(rowset(None, vec![row.clone(), row])));
        assert_eq!(fetch_row_count(&msg), Some(2));
        assert_eq!(
            fetch_row_count(&reply(Some(rowset(Some(Vec::new()), Vec::new())))),
            Some(0)
        );
        assert_eq!(fetch_row_count(&reply(None)), None);
    }

    #[test]
    fn never_panics_on_cut_or_garbage_input() {
        let msg = reply(Some(rowset(
            Some(vec![t::TColumn::I64Val(t::TI64Column {
                values: vec![5; 100],
                nulls: vec![],
            })]),
            Vec::new(),
        )));
        for end in 0..msg.len() {
            let _ = fetch_row_count(&msg[..end]);
        }
        let _ = fetch_row_count(&[0xff; 64]);
    }
}
