//! The protobuf wire format, read field by field: varints, fixed-width numbers and
//! length-delimited payloads. Knows nothing of Kubernetes; `message` gives it meaning.

/// Why a buffer is not a well-formed sequence of protobuf fields.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("unexpected end of data at byte {0}")]
    Truncated(usize),
    #[error("varint longer than 10 bytes at byte {0}")]
    VarintOverflow(usize),
    #[error("unsupported wire type {wire_type} at byte {at}")]
    WireType { wire_type: u8, at: usize },
    #[error("field number 0 at byte {0}")]
    ZeroTag(usize),
}

/// One field value as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum WireValue<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    Fixed32(u32),
}

impl WireValue<'_> {
    /// The wire kind, for error messages.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            WireValue::Varint(_) => "varint",
            WireValue::Fixed64(_) => "fixed64",
            WireValue::Bytes(_) => "length-delimited",
            WireValue::Fixed32(_) => "fixed32",
        }
    }
}

/// Iterates over the `(field number, value)` pairs of one message.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Result<u64, WireError> {
        let start = self.pos;
        let mut value = 0u64;
        for shift in (0..70).step_by(7) {
            let Some(&byte) = self.buf.get(self.pos) else {
                return Err(WireError::Truncated(self.pos));
            };
            self.pos += 1;
            value |= u64::from(byte & 0x7f).checked_shl(shift).unwrap_or(0);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err(WireError::VarintOverflow(start))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self.pos.checked_add(n).filter(|end| *end <= self.buf.len());
        let end = end.ok_or(WireError::Truncated(self.buf.len()))?;
        let out = &self.buf[self.pos..end];
        self.pos = end;
        Ok(out)
    }

    pub(crate) fn fixed64(&mut self) -> Result<u64, WireError> {
        let b = self.take(8)?;
        Ok(u64::from_le_bytes(
            b.try_into().expect("invariant: take(8) returns 8 bytes"),
        ))
    }

    fn fixed32(&mut self) -> Result<u32, WireError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes(
            b.try_into().expect("invariant: take(4) returns 4 bytes"),
        ))
    }

    fn field(&mut self) -> Result<(u32, WireValue<'a>), WireError> {
        let at = self.pos;
        let key = self.varint()?;
        let tag = u32::try_from(key >> 3).map_err(|_| WireError::WireType {
            wire_type: 0xff,
            at,
        })?;
        if tag == 0 {
            return Err(WireError::ZeroTag(at));
        }
        let value = match key & 7 {
            0 => WireValue::Varint(self.varint()?),
            1 => WireValue::Fixed64(self.fixed64()?),
            2 => {
                let len = usize::try_from(self.varint()?)
                    .map_err(|_| WireError::Truncated(self.buf.len()))?;
                WireValue::Bytes(self.take(len)?)
            }
            5 => WireValue::Fixed32(self.fixed32()?),
            // 3 and 4 are proto2 groups, which Kubernetes never uses.
            wire_type => {
                return Err(WireError::WireType {
                    wire_type: wire_type as u8,
                    at,
                })
            }
        };
        Ok((tag, value))
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u32, WireValue<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.is_empty() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            // Stop after the first error: the position is no longer trustworthy.
            self.pos = self.buf.len();
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(buf: &[u8]) -> Result<Vec<(u32, WireValue<'_>)>, WireError> {
        Reader::new(buf).collect()
    }

    #[test]
    fn reads_each_wire_type() {
        let buf = [
            0x08, 0x96, 0x01, // 1: varint 150
            0x11, 1, 0, 0, 0, 0, 0, 0, 0, // 2: fixed64 1
            0x1a, 0x02, b'h', b'i', // 3: bytes "hi"
            0x25, 2, 0, 0, 0, // 4: fixed32 2
        ];
        assert_eq!(
            fields(&buf).expect("well-formed"),
            vec![
                (1, WireValue::Varint(150)),
                (2, WireValue::Fixed64(1)),
                (3, WireValue::Bytes(b"hi")),
                (4, WireValue::Fixed32(2)),
            ]
        );
    }

    #[test]
    fn negative_int32_is_a_ten_byte_varint() {
        let buf = [
            0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
        ];
        assert_eq!(
            fields(&buf).expect("well-formed"),
            vec![(1, WireValue::Varint(u64::MAX))]
        );
        assert_eq!(u64::MAX as i32, -1);
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: &[(&[u8], WireError)] = &[
            (&[0x08], WireError::Truncated(1)),
            (&[0x0a, 0x05, b'a'], WireError::Truncated(3)),
            (
                &[0x0b],
                WireError::WireType {
                    wire_type: 3,
                    at: 0,
                },
            ),
            (&[0x00, 0x01], WireError::ZeroTag(0)),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                WireError::VarintOverflow(1),
            ),
            (
                &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
                WireError::Truncated(10),
            ),
        ];
        for (buf, want) in cases {
            assert_eq!(fields(buf), Err(want.clone()), "{buf:?}");
        }
    }
}
