use super::*;
use proptest::prelude::*;

/// What a driver sends for rows `values` (None = null) of a string column and an int column.
fn driver_batch(offset: usize, values: &[Option<i32>]) -> t::TRowSet {
    let mut nulls = vec![0u8; values.len().div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        if v.is_none() {
            nulls[i / 8] |= 1 << (i % 8);
        }
    }
    while nulls.last() == Some(&0) {
        nulls.pop();
    }
    let strings = values
        .iter()
        .map(|v| v.map_or(String::new(), |v| format!("s{v}")))
        .collect();
    let ints = values.iter().map(|v| v.unwrap_or(0)).collect();
    t::TRowSet {
        start_row_offset: offset as i64,
        rows: Vec::new(),
        columns: Some(vec![
            t::TColumn::StringVal(t::TStringColumn::new(strings, nulls.clone())),
            t::TColumn::I32Val(t::TI32Column::new(ints, nulls.clone())),
            t::TColumn::DoubleVal(t::TDoubleColumn::new(
                values
                    .iter()
                    .map(|v| OrderedFloat(v.unwrap_or(0) as f64 / 3.0))
                    .collect(),
                nulls.clone(),
            )),
            t::TColumn::BoolVal(t::TBoolColumn::new(
                values
                    .iter()
                    .map(|v| v.is_some_and(|v| v % 2 == 0))
                    .collect(),
                nulls.clone(),
            )),
            t::TColumn::BinaryVal(t::TBinaryColumn::new(
                values
                    .iter()
                    .map(|v| v.map_or(vec![], |v| v.to_le_bytes().to_vec()))
                    .collect(),
                nulls.clone(),
            )),
            t::TColumn::I64Val(t::TI64Column::new(
                values
                    .iter()
                    .map(|v| v.unwrap_or(0) as i64 * 1_000_000_007)
                    .collect(),
                nulls.clone(),
            )),
            t::TColumn::I16Val(t::TI16Column::new(
                values.iter().map(|v| v.unwrap_or(0) as i16).collect(),
                nulls.clone(),
            )),
            t::TColumn::ByteVal(t::TByteColumn::new(
                values.iter().map(|v| v.unwrap_or(0) as i8).collect(),
                nulls,
            )),
        ]),
        binary_columns: None,
        column_count: None,
    }
}

proptest! {
    /// Kept in the batches one fetch size gave, served in another's: exactly what the driver
    /// sends for the second.
    #[test]
    fn any_fetch_size_gets_the_drivers_batches(
        values in proptest::collection::vec(proptest::option::of(-1000i32..1000), 0..70),
        kept_in in 1usize..20,
        served_in in 1usize..30,
    ) {
        let mut rows = Rows::new();
        for (i, chunk) in values.chunks(kept_in).enumerate() {
            rows.push(&driver_batch(i * kept_in, chunk)).unwrap();
        }
        prop_assert_eq!(rows.row_count(), values.len());
        for (i, chunk) in values.chunks(served_in).enumerate() {
            prop_assert_eq!(rows.slice(i * served_in, served_in), driver_batch(i * served_in, chunk));
        }
        // Past the end: an empty batch of the same columns.
        let past = rows.slice(values.len(), served_in);
        let empty = past.columns.unwrap_or_default().iter().all(|c| match c {
            t::TColumn::StringVal(s) => s.values.is_empty(),
            _ => true,
        });
        prop_assert!(empty);
    }
}

#[test]
fn row_based_results_and_changing_shapes_are_refused() {
    let mut rows = Rows::new();
    let row_based = t::TRowSet {
        start_row_offset: 0,
        rows: vec![t::TRow { col_vals: vec![] }],
        columns: None,
        binary_columns: None,
        column_count: None,
    };
    assert_eq!(rows.push(&row_based), Err(RowsError::RowBased));
    rows.push(&driver_batch(0, &[Some(1)])).unwrap();
    let other = t::TRowSet {
        columns: Some(vec![t::TColumn::I32Val(t::TI32Column::new(
            vec![1],
            vec![],
        ))]),
        ..driver_batch(1, &[Some(2)])
    };
    assert_eq!(rows.push(&other), Err(RowsError::Shape));
    assert!(rows.memory_bytes() > 0);
}
