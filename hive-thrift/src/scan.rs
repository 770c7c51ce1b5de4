//! Finds where one Thrift binary-protocol message ends, without decoding it.
//!
//! NOSASL clients write raw, unframed `TBinaryProtocol` messages on the socket, so the only way to
//! know a message is complete is to walk its structure. [`MessageScanner`] does that over a byte
//! buffer, resumably: bytes that arrive later continue the walk where it stopped, so a large
//! message costs one pass however it is split. Every length is checked against the configured
//! maximum as soon as it is read, so a message that claims 2 GiB is refused at once.

use crate::error::FrameError;

/// Thrift binary protocol type ids.
pub(crate) mod ttype {
    pub const STOP: u8 = 0;
    pub const BOOL: u8 = 2;
    pub const BYTE: u8 = 3;
    pub const DOUBLE: u8 = 4;
    pub const I16: u8 = 6;
    pub const I32: u8 = 8;
    pub const I64: u8 = 10;
    pub const STRING: u8 = 11;
    pub const STRUCT: u8 = 12;
    pub const MAP: u8 = 13;
    pub const SET: u8 = 14;
    pub const LIST: u8 = 15;
    pub const UUID: u8 = 16;
}

/// Upper bound on nesting (structs in lists in maps ...). TCLIService nests a handful of levels;
/// the bound keeps a hostile message from growing the scanner's stack without limit.
const MAX_DEPTH: usize = 64;

const STRICT_VERSION_MASK: u32 = 0xffff_0000;
const STRICT_VERSION_1: u32 = 0x8001_0000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Item {
    /// A value of this type is next.
    Value(u8),
    /// Inside a struct: a field header or STOP is next.
    Struct,
    /// Inside a list or set: `remaining` elements of type `elem` follow.
    List { elem: u8, remaining: u32 },
    /// Inside a map: `remaining` keys and values follow, alternating, key first.
    Map { key: u8, value: u8, remaining: u64 },
}

/// Resumable walk over one binary-protocol message.
#[derive(Debug)]
pub struct MessageScanner {
    max_message_size: usize,
    pos: usize,
    header_done: bool,
    stack: Vec<Item>,
}

impl MessageScanner {
    pub fn new(max_message_size: usize) -> Self {
        Self {
            max_message_size,
            pos: 0,
            header_done: false,
            stack: Vec::new(),
        }
    }

    /// Continues the walk over `buf` (which must start with the same bytes as on earlier calls).
    /// Returns the message length once the whole message is in `buf`, `None` while more is needed.
    /// After `Some`, call [`MessageScanner::reset`] before scanning the next message.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        if !self.header_done {
            match self.scan_header(buf)? {
                Some(end) => {
                    self.pos = end;
                    self.header_done = true;
                    self.stack.push(Item::Struct);
                }
                None => return Ok(None),
            }
        }
        while let Some(top) = self.stack.last_mut() {
            match *top {
                Item::Struct => {
                    let Some(&field_type) = buf.get(self.pos) else {
                        return Ok(None);
                    };
                    if field_type == ttype::STOP {
                        self.advance(1)?;
                        self.stack.pop();
                    } else {
                        if !self.available(buf, 3)? {
                            return Ok(None);
                        }
                        self.advance(3)?;
                        self.push(Item::Value(field_type))?;
                    }
                }
                Item::List {
                    elem,
                    ref mut remaining,
                } => {
                    if *remaining == 0 {
                        self.stack.pop();
                    } else if let Some(size) = fixed_size(elem) {
                        // Fixed-size elements: consume as many whole ones as have arrived.
                        let arrived = (buf.len().saturating_sub(self.pos) / size) as u64;
                        let take = arrived.min(u64::from(*remaining)) as u32;
                        *remaining -= take;
                        let done = *remaining == 0;
                        self.advance(take as usize * size)?;
                        if done {
                            self.stack.pop();
                        } else {
                            return Ok(None);
                        }
                    } else {
                        *remaining -= 1;
                        self.push(Item::Value(elem))?;
                    }
                }
                Item::Map {
                    key,
                    value,
                    ref mut remaining,
                } => {
                    if *remaining == 0 {
                        self.stack.pop();
                    } else {
                        let next = if *remaining % 2 == 0 { key } else { value };
                        *remaining -= 1;
                        self.push(Item::Value(next))?;
                    }
                }
                Item::Value(value_type) => {
                    if !self.scan_value(buf, value_type)? {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(Some(self.pos))
    }

    /// Forgets the finished message so the scanner can walk the next one.
    pub fn reset(&mut self) {
        self.pos = 0;
        self.header_done = false;
        self.stack.clear();
    }

    /// Scans the value on top of the stack; `false` when more bytes are needed.
    fn scan_value(&mut self, buf: &[u8], value_type: u8) -> Result<bool, FrameError> {
        if let Some(size) = fixed_size(value_type) {
            if !self.available(buf, size)? {
                return Ok(false);
            }
            self.advance(size)?;
            self.stack.pop();
            return Ok(true);
        }
        match value_type {
            ttype::STRING => {
                if !self.available(buf, 4)? {
                    return Ok(false);
                }
                let len = self.read_len(buf, self.pos)?;
                if !self.available(buf, 4 + len)? {
                    return Ok(false);
                }
                self.advance(4 + len)?;
                self.stack.pop();
            }
            ttype::STRUCT => {
                self.stack.pop();
                self.push(Item::Struct)?;
            }
            ttype::LIST | ttype::SET => {
                if !self.available(buf, 5)? {
                    return Ok(false);
                }
                let elem = buf[self.pos];
                let count = self.read_len(buf, self.pos + 1)?;
                if count > 0 {
                    self.check_element_type(elem)?;
                }
                self.check_count(count, min_encoded_size(elem))?;
                self.advance(5)?;
                self.stack.pop();
                self.push(Item::List {
                    elem,
                    remaining: count as u32,
                })?;
            }
            ttype::MAP => {
                if !self.available(buf, 6)? {
                    return Ok(false);
                }
                let (key, value) = (buf[self.pos], buf[self.pos + 1]);
                let count = self.read_len(buf, self.pos + 2)?;
                if count > 0 {
                    self.check_element_type(key)?;
                    self.check_element_type(value)?;
                }
                self.check_count(count, min_encoded_size(key) + min_encoded_size(value))?;
                self.advance(6)?;
                self.stack.pop();
                self.push(Item::Map {
                    key,
                    value,
                    remaining: 2 * count as u64,
                })?;
            }
            other => {
                return Err(FrameError::Malformed(format!(
                    "unknown thrift type id {other}"
                )))
            }
        }
        Ok(true)
    }

    /// Parses the message header; returns where the body starts.
    fn scan_header(&self, buf: &[u8]) -> Result<Option<usize>, FrameError> {
        if buf.len() < 4 {
            return Ok(None);
        }
        let first = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
        if first & 0x8000_0000 != 0 {
            if first & STRICT_VERSION_MASK != STRICT_VERSION_1 {
                return Err(FrameError::Malformed(format!(
                    "not a thrift binary message (version word {first:#010x})"
                )));
            }
            // version word, name, seqid
            if buf.len() < 8 {
                return Ok(None);
            }
            let name_len = self.read_len(buf, 4)?;
            let end = 8 + name_len + 4;
            self.check_total(end)?;
            Ok((buf.len() >= end).then_some(end))
        } else {
            // Old non-strict form: name, type byte, seqid.
            let name_len = self.read_len(buf, 0)?;
            let end = 4 + name_len + 1 + 4;
            self.check_total(end)?;
            Ok((buf.len() >= end).then_some(end))
        }
    }

    fn push(&mut self, item: Item) -> Result<(), FrameError> {
        if self.stack.len() >= MAX_DEPTH {
            return Err(FrameError::Malformed(format!(
                "message nests deeper than {MAX_DEPTH} levels"
            )));
        }
        self.stack.push(item);
        Ok(())
    }

    fn advance(&mut self, n: usize) -> Result<(), FrameError> {
        self.pos += n;
        self.check_total(self.pos)
    }

    fn available(&self, buf: &[u8], n: usize) -> Result<bool, FrameError> {
        self.check_total(self.pos + n)?;
        Ok(buf.len() >= self.pos + n)
    }

    fn check_total(&self, end: usize) -> Result<(), FrameError> {
        if end > self.max_message_size {
            return Err(FrameError::TooLarge {
                size: end as u64,
                max: self.max_message_size,
            });
        }
        Ok(())
    }

    /// Reads a non-negative i32 length and checks that it fits in what is left of the budget.
    fn read_len(&self, buf: &[u8], at: usize) -> Result<usize, FrameError> {
        let raw = i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]);
        if raw < 0 {
            return Err(FrameError::Malformed(format!("negative length {raw}")));
        }
        let len = raw as usize;
        self.check_total(at + 4 + len).map(|()| len)
    }

    fn check_count(&self, count: usize, min_each: usize) -> Result<(), FrameError> {
        self.check_total(self.pos + count.saturating_mul(min_each))
    }

    fn check_element_type(&self, t: u8) -> Result<(), FrameError> {
        if fixed_size(t).is_some()
            || matches!(
                t,
                ttype::STRING | ttype::STRUCT | ttype::LIST | ttype::SET | ttype::MAP
            )
        {
            Ok(())
        } else {
            Err(FrameError::Malformed(format!("unknown thrift type id {t}")))
        }
    }
}

fn fixed_size(t: u8) -> Option<usize> {
    match t {
        ttype::BOOL | ttype::BYTE => Some(1),
        ttype::I16 => Some(2),
        ttype::I32 => Some(4),
        ttype::DOUBLE | ttype::I64 => Some(8),
        ttype::UUID => Some(16),
        _ => None,
    }
}

/// The fewest bytes one value of type `t` can take; bounds element counts before they are walked.
fn min_encoded_size(t: u8) -> usize {
    match t {
        ttype::STRING => 4,
        ttype::STRUCT => 1,
        ttype::LIST | ttype::SET => 5,
        ttype::MAP => 6,
        other => fixed_size(other).unwrap_or(1),
    }
}

#[cfg(test)]
mod tests;
