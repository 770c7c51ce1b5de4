//! A binary input protocol that refuses any length longer than what is left of the message.
//!
//! The Thrift runtime allocates what a string length or container size claims
//! (`vec![0; len]`, `Vec::with_capacity(size)`) before reading a byte of it, and the generated
//! code reads a field by its id whatever type the wire says it has, so a message that passes
//! [`super::validate_lengths`] can still hand the runtime a length it never checked (an `i32`
//! field where a string is expected). Here every length and size is checked, at the moment it is
//! read, against the bytes left: a string takes at most all of them, a container at most one
//! element per fewest bytes its wire type can take.

use std::cell::Cell;
use std::io::Read;
use std::rc::Rc;

use thrift::protocol::{
    TBinaryInputProtocol, TFieldIdentifier, TInputProtocol, TListIdentifier, TMapIdentifier,
    TMessageIdentifier, TSetIdentifier, TStructIdentifier, TType,
};
use thrift::{new_protocol_error, ProtocolErrorKind};

/// The unread rest of the message, shared by the protocol (to check lengths) and its transport.
#[derive(Clone)]
struct Rest<'a>(Rc<Cell<&'a [u8]>>);

impl Read for Rest<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let mut rest = self.0.get();
        let n = rest.read(out)?;
        self.0.set(rest);
        Ok(n)
    }
}

/// [`TBinaryInputProtocol`] (strict) over a byte slice, with every length bounded.
pub(super) struct BoundedInput<'a> {
    rest: Rest<'a>,
    inner: TBinaryInputProtocol<Rest<'a>>,
}

impl<'a> BoundedInput<'a> {
    pub(super) fn new(msg: &'a [u8]) -> Self {
        let rest = Rest(Rc::new(Cell::new(msg)));
        Self {
            inner: TBinaryInputProtocol::new(rest.clone(), true),
            rest,
        }
    }

    /// Refuses `count` items of at least `min_each` bytes if fewer than that many bytes are left
    /// after the first `skip` unread ones.
    fn check(&self, count: i32, min_each: usize, skip: usize) -> thrift::Result<()> {
        if count < 0 {
            return Err(new_protocol_error(
                ProtocolErrorKind::NegativeSize,
                format!("negative length {count}"),
            ));
        }
        let left = self.rest.0.get().len().saturating_sub(skip);
        if (count as usize).saturating_mul(min_each) > left {
            return Err(new_protocol_error(
                ProtocolErrorKind::SizeLimit,
                format!("length {count} exceeds the {left} bytes left in the message"),
            ));
        }
        Ok(())
    }

    /// Checks the length prefix of the string or binary value that comes next.
    fn check_next_length(&self) -> thrift::Result<()> {
        match self.rest.0.get().get(..4) {
            Some(b) => self.check(i32::from_be_bytes([b[0], b[1], b[2], b[3]]), 1, 4),
            None => Ok(()), // the inner protocol reports the early end
        }
    }
}

/// The fewest bytes one value of wire type `t` takes.
fn min_wire_size(t: Option<TType>) -> usize {
    match t {
        Some(TType::I16) => 2,
        Some(TType::I32 | TType::String | TType::Utf7 | TType::Utf8 | TType::Utf16) => 4,
        Some(TType::I64 | TType::Double) => 8,
        Some(TType::List | TType::Set) => 5,
        Some(TType::Map) => 6,
        _ => 1,
    }
}

impl TInputProtocol for BoundedInput<'_> {
    fn read_message_begin(&mut self) -> thrift::Result<TMessageIdentifier> {
        // The name is a string: bounded like one.
        if self.rest.0.get().first().is_some_and(|b| b & 0x80 != 0) {
            if let Some(b) = self.rest.0.get().get(4..8) {
                self.check(i32::from_be_bytes([b[0], b[1], b[2], b[3]]), 1, 8)?;
            }
        } else {
            self.check_next_length()?;
        }
        self.inner.read_message_begin()
    }
    fn read_message_end(&mut self) -> thrift::Result<()> {
        self.inner.read_message_end()
    }
    fn read_struct_begin(&mut self) -> thrift::Result<Option<TStructIdentifier>> {
        self.inner.read_struct_begin()
    }
    fn read_struct_end(&mut self) -> thrift::Result<()> {
        self.inner.read_struct_end()
    }
    fn read_field_begin(&mut self) -> thrift::Result<TFieldIdentifier> {
        self.inner.read_field_begin()
    }
    fn read_field_end(&mut self) -> thrift::Result<()> {
        self.inner.read_field_end()
    }
    fn read_bool(&mut self) -> thrift::Result<bool> {
        self.inner.read_bool()
    }
    fn read_bytes(&mut self) -> thrift::Result<Vec<u8>> {
        self.check_next_length()?;
        self.inner.read_bytes()
    }
    fn read_i8(&mut self) -> thrift::Result<i8> {
        self.inner.read_i8()
    }
    fn read_i16(&mut self) -> thrift::Result<i16> {
        self.inner.read_i16()
    }
    fn read_i32(&mut self) -> thrift::Result<i32> {
        self.inner.read_i32()
    }
    fn read_i64(&mut self) -> thrift::Result<i64> {
        self.inner.read_i64()
    }
    fn read_double(&mut self) -> thrift::Result<f64> {
        self.inner.read_double()
    }
    fn read_string(&mut self) -> thrift::Result<String> {
        self.check_next_length()?;
        self.inner.read_string()
    }
    fn read_list_begin(&mut self) -> thrift::Result<TListIdentifier> {
        let list = self.inner.read_list_begin()?;
        self.check(list.size, min_wire_size(Some(list.element_type)), 0)?;
        Ok(list)
    }
    fn read_list_end(&mut self) -> thrift::Result<()> {
        self.inner.read_list_end()
    }
    fn read_set_begin(&mut self) -> thrift::Result<TSetIdentifier> {
        let set = self.inner.read_set_begin()?;
        self.check(set.size, min_wire_size(Some(set.element_type)), 0)?;
        Ok(set)
    }
    fn read_set_end(&mut self) -> thrift::Result<()> {
        self.inner.read_set_end()
    }
    fn read_map_begin(&mut self) -> thrift::Result<TMapIdentifier> {
        let map = self.inner.read_map_begin()?;
        let each = min_wire_size(map.key_type) + min_wire_size(map.value_type);
        self.check(map.size, each, 0)?;
        Ok(map)
    }
    fn read_map_end(&mut self) -> thrift::Result<()> {
        self.inner.read_map_end()
    }
    fn read_byte(&mut self) -> thrift::Result<u8> {
        self.inner.read_byte()
    }
}
