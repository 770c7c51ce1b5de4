//! A statement's rows, kept as Arrow arrays, converted from the driver's columnar `TRowSet`s and
//! back, so a client served from the cache gets, for any fetch size, the batches the driver would
//! have sent: the same column types, the same values (also under nulls) and the same null
//! bitmaps (Java's `BitSet.toByteArray`: a bit per row, least significant first, trailing zero
//! bytes left out).
//!
//! HS2 carries every Spark type as one of eight column kinds: decimals, dates, timestamps,
//! intervals and complex types arrive as strings, and come back as the same strings.

use std::sync::Arc;

use arrow_array::{
    Array, ArrayRef, BinaryArray, BooleanArray, Float64Array, Int16Array, Int32Array, Int64Array,
    Int8Array, RecordBatch, StringArray,
};
use arrow_buffer::{BooleanBuffer, NullBuffer};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use hive_thrift::generated::tcliservice as t;
use thrift::OrderedFloat;

/// Why rows cannot be kept.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RowsError {
    #[error("row-based result sets (protocol before V6) are not kept")]
    RowBased,
    #[error("columns of different lengths in one batch")]
    Ragged,
    #[error("a batch's columns differ from the first batch's")]
    Shape,
}

/// The rows of one result, as the driver sent them, in order.
#[derive(Debug, Clone)]
pub struct Rows {
    schema: SchemaRef,
    batches: Vec<RecordBatch>,
    rows: usize,
}

impl Rows {
    pub fn new() -> Self {
        Self {
            schema: Arc::new(Schema::empty()),
            batches: Vec::new(),
            rows: 0,
        }
    }

    pub fn row_count(&self) -> usize {
        self.rows
    }

    /// What the rows hold in memory (Arrow buffers).
    pub fn memory_bytes(&self) -> usize {
        self.batches
            .iter()
            .map(RecordBatch::get_array_memory_size)
            .sum()
    }

    /// Appends one fetched batch.
    pub fn push(&mut self, rows: &t::TRowSet) -> Result<(), RowsError> {
        let Some(columns) = &rows.columns else {
            return if rows.rows.is_empty() {
                Ok(())
            } else {
                Err(RowsError::RowBased)
            };
        };
        let arrays: Vec<ArrayRef> = columns.iter().map(to_arrow).collect();
        let len = arrays.first().map_or(0, |a| a.len());
        if arrays.iter().any(|a| a.len() != len) {
            return Err(RowsError::Ragged);
        }
        if len == 0 && !self.batches.is_empty() {
            return Ok(());
        }
        let fields: Vec<Field> = arrays
            .iter()
            .enumerate()
            .map(|(i, a)| Field::new(format!("c{i}"), a.data_type().clone(), true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        if !self.batches.is_empty() && schema != self.schema {
            return Err(RowsError::Shape);
        }
        let options = arrow_array::RecordBatchOptions::new().with_row_count(Some(len));
        let batch = RecordBatch::try_new_with_options(schema.clone(), arrays, &options)
            .map_err(|_| RowsError::Shape)?;
        self.schema = schema;
        self.rows += len;
        self.batches.push(batch);
        Ok(())
    }

    /// Rows `offset..offset + max` as the driver sends a batch (`start_row_offset` = offset).
    pub fn slice(&self, offset: usize, max: usize) -> t::TRowSet {
        let end = offset.saturating_add(max).min(self.rows);
        let mut columns: Vec<t::TColumn> = self
            .schema
            .fields()
            .iter()
            .map(|f| empty_column(f.data_type()))
            .collect();
        let mut batch_start = 0;
        for batch in &self.batches {
            let batch_end = batch_start + batch.num_rows();
            let from = offset.max(batch_start);
            let to = end.min(batch_end);
            if from < to {
                let part = batch.slice(from - batch_start, to - from);
                for (column, array) in columns.iter_mut().zip(part.columns()) {
                    extend_column(column, array.as_ref(), from - offset);
                }
            }
            batch_start = batch_end;
        }
        for column in &mut columns {
            trim_nulls(column);
        }
        t::TRowSet {
            start_row_offset: offset as i64,
            rows: Vec::new(),
            columns: Some(columns),
            binary_columns: None,
            column_count: None,
        }
    }
}

impl Default for Rows {
    fn default() -> Self {
        Self::new()
    }
}

fn validity(nulls: &[u8], len: usize) -> Option<NullBuffer> {
    let is_null = |i: usize| nulls.get(i / 8).is_some_and(|b| b & (1 << (i % 8)) != 0);
    if !(0..len).any(is_null) {
        return None;
    }
    Some(NullBuffer::new(BooleanBuffer::from_iter(
        (0..len).map(|i| !is_null(i)),
    )))
}

/// Builders leave spare capacity; a cached result is kept for minutes, so it keeps none.
fn shrunk<A: Array + 'static>(mut array: A) -> ArrayRef {
    array.shrink_to_fit();
    Arc::new(array)
}

fn to_arrow(column: &t::TColumn) -> ArrayRef {
    use t::TColumn as C;
    match column {
        C::BoolVal(c) => shrunk(BooleanArray::new(
            BooleanBuffer::from_iter(c.values.iter().copied()),
            validity(&c.nulls, c.values.len()),
        )),
        C::ByteVal(c) => shrunk(Int8Array::new(
            c.values.clone().into(),
            validity(&c.nulls, c.values.len()),
        )),
        C::I16Val(c) => shrunk(Int16Array::new(
            c.values.clone().into(),
            validity(&c.nulls, c.values.len()),
        )),
        C::I32Val(c) => shrunk(Int32Array::new(
            c.values.clone().into(),
            validity(&c.nulls, c.values.len()),
        )),
        C::I64Val(c) => shrunk(Int64Array::new(
            c.values.clone().into(),
            validity(&c.nulls, c.values.len()),
        )),
        C::DoubleVal(c) => shrunk(Float64Array::new(
            c.values.iter().map(|v| v.0).collect::<Vec<f64>>().into(),
            validity(&c.nulls, c.values.len()),
        )),
        C::StringVal(c) => {
            // Values under nulls are kept too (Spark sends "" there).
            let values = StringArray::from_iter_values(&c.values);
            let nulls = validity(&c.nulls, c.values.len());
            let (offsets, data, _) = values.into_parts();
            shrunk(StringArray::new(offsets, data, nulls))
        }
        C::BinaryVal(c) => {
            let values = BinaryArray::from_iter_values(&c.values);
            let nulls = validity(&c.nulls, c.values.len());
            let (offsets, data, _) = values.into_parts();
            shrunk(BinaryArray::new(offsets, data, nulls))
        }
    }
}

fn empty_column(data_type: &DataType) -> t::TColumn {
    use t::TColumn as C;
    match data_type {
        DataType::Boolean => C::BoolVal(t::TBoolColumn::new(vec![], vec![])),
        DataType::Int8 => C::ByteVal(t::TByteColumn::new(vec![], vec![])),
        DataType::Int16 => C::I16Val(t::TI16Column::new(vec![], vec![])),
        DataType::Int32 => C::I32Val(t::TI32Column::new(vec![], vec![])),
        DataType::Int64 => C::I64Val(t::TI64Column::new(vec![], vec![])),
        DataType::Float64 => C::DoubleVal(t::TDoubleColumn::new(vec![], vec![])),
        DataType::Binary => C::BinaryVal(t::TBinaryColumn::new(vec![], vec![])),
        _ => C::StringVal(t::TStringColumn::new(vec![], vec![])),
    }
}

/// Appends `array`'s values to `column`, their nulls at bit `at` on.
fn extend_column(column: &mut t::TColumn, array: &dyn Array, at: usize) {
    use arrow_array::cast::AsArray;
    use arrow_array::types as ty;
    use t::TColumn as C;
    let nulls = match column {
        C::BoolVal(c) => {
            c.values.extend(array.as_boolean().values().iter());
            &mut c.nulls
        }
        C::ByteVal(c) => {
            c.values
                .extend(array.as_primitive::<ty::Int8Type>().values().iter());
            &mut c.nulls
        }
        C::I16Val(c) => {
            c.values
                .extend(array.as_primitive::<ty::Int16Type>().values().iter());
            &mut c.nulls
        }
        C::I32Val(c) => {
            c.values
                .extend(array.as_primitive::<ty::Int32Type>().values().iter());
            &mut c.nulls
        }
        C::I64Val(c) => {
            c.values
                .extend(array.as_primitive::<ty::Int64Type>().values().iter());
            &mut c.nulls
        }
        C::DoubleVal(c) => {
            let values = array.as_primitive::<ty::Float64Type>().values();
            c.values.extend(values.iter().map(|v| OrderedFloat(*v)));
            &mut c.nulls
        }
        C::StringVal(c) => {
            let strings = array.as_string::<i32>();
            c.values
                .extend((0..strings.len()).map(|i| strings.value(i).to_owned()));
            &mut c.nulls
        }
        C::BinaryVal(c) => {
            let bytes = array.as_binary::<i32>();
            c.values
                .extend((0..bytes.len()).map(|i| bytes.value(i).to_vec()));
            &mut c.nulls
        }
    };
    if let Some(validity) = array.nulls() {
        for i in validity
            .iter()
            .enumerate()
            .filter_map(|(i, v)| (!v).then_some(i))
        {
            let bit = at + i;
            if nulls.len() <= bit / 8 {
                nulls.resize(bit / 8 + 1, 0);
            }
            nulls[bit / 8] |= 1 << (bit % 8);
        }
    }
}

/// Java's `BitSet.toByteArray` leaves trailing zero bytes out.
fn trim_nulls(column: &mut t::TColumn) {
    use t::TColumn as C;
    let nulls = match column {
        C::BoolVal(c) => &mut c.nulls,
        C::ByteVal(c) => &mut c.nulls,
        C::I16Val(c) => &mut c.nulls,
        C::I32Val(c) => &mut c.nulls,
        C::I64Val(c) => &mut c.nulls,
        C::DoubleVal(c) => &mut c.nulls,
        C::StringVal(c) => &mut c.nulls,
        C::BinaryVal(c) => &mut c.nulls,
    };
    while nulls.last() == Some(&0) {
        nulls.pop();
    }
}

#[cfg(test)]
mod tests;
