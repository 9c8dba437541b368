//! The few pieces of the protobuf wire format that the stored `KeyVersion` (§6.1) needs: varints
//! and length-delimited fields to write, and a field iterator to read.
//!
//! Hand-written because the message is four fields deep at most and a protobuf crate would bring a
//! code generator or a reflection runtime for it. Reading follows proto3 as Go's decoder applies
//! it: unknown fields (and known fields with an unexpected wire type) are skipped; malformed
//! varints, truncated fields, field number 0 and groups are errors.
//!
//! This module sees key material (the key fields) and must never copy it out of the buffer it is
//! given or put it into an error.

/// The protobuf wire types (groups, 3 and 4, are not supported: proto3 never writes them).
pub(super) const VARINT: u8 = 0;
const I64: u8 = 1;
pub(super) const LEN: u8 = 2;
const I32: u8 = 5;

/// Why a protobuf value could not be read. Carries no data from the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WireError {
    Truncated,
    VarintOverflow,
    BadFieldNumber,
    UnsupportedWireType(u8),
}

impl std::fmt::Display for WireError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WireError::Truncated => f.write_str("truncated protobuf field"),
            WireError::VarintOverflow => f.write_str("protobuf varint overflows 64 bits"),
            WireError::BadFieldNumber => f.write_str("invalid protobuf field number"),
            WireError::UnsupportedWireType(t) => write!(f, "unsupported protobuf wire type {t}"),
        }
    }
}

/// Appends `v` as a base-128 varint. Negative int64/int32 values are passed as their two's
/// complement `u64` (10 bytes), which is what proto3 requires for `int64` and `int32`.
pub(super) fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, u64::from(field) << 3 | u64::from(wire_type));
}

/// A length-delimited field (bytes, string, embedded message). Always written, even when empty:
/// an embedded message that is set but empty must still be present.
pub(super) fn put_len(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// A varint scalar field; proto3 omits scalars equal to their default (zero).
pub(super) fn put_uint(out: &mut Vec<u8>, field: u32, v: u64) {
    if v != 0 {
        put_tag(out, field, VARINT);
        put_varint(out, v);
    }
}

/// The payload of one field as read from the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Value<'a> {
    Varint(u64),
    Len(&'a [u8]),
    /// Fixed-size values: no field of ours uses them; they are only skipped.
    Fixed,
}

/// Iterates over the fields of one message. After the first error it yields nothing more.
pub(super) struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    pub(super) fn new(message: &'a [u8]) -> Fields<'a> {
        Fields { rest: message }
    }

    fn varint(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.rest.split_first().ok_or(WireError::Truncated)?;
            self.rest = rest;
            // The tenth byte may only contribute the top bit of a u64.
            if i == 9 && b > 1 {
                return Err(WireError::VarintOverflow);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(WireError::VarintOverflow)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let (taken, rest) = self.rest.split_at_checked(n).ok_or(WireError::Truncated)?;
        self.rest = rest;
        Ok(taken)
    }

    fn field(&mut self) -> Result<(u32, Value<'a>), WireError> {
        let tag = self.varint()?;
        let number = u32::try_from(tag >> 3)
            .ok()
            .filter(|&n| n != 0 && n <= i32::MAX as u32)
            .ok_or(WireError::BadFieldNumber)?;
        let value = match (tag & 7) as u8 {
            VARINT => Value::Varint(self.varint()?),
            I64 => {
                self.take(8)?;
                Value::Fixed
            }
            LEN => {
                let len = usize::try_from(self.varint()?).map_err(|_| WireError::Truncated)?;
                Value::Len(self.take(len)?)
            }
            I32 => {
                self.take(4)?;
                Value::Fixed
            }
            other => return Err(WireError::UnsupportedWireType(other)),
        };
        Ok((number, value))
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Value<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        let item = self.field();
        if item.is_err() {
            self.rest = &[];
        }
        Some(item)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip() {
        for v in [
            0u64,
            1,
            127,
            128,
            300,
            u32::MAX as u64,
            (-1i64) as u64,
            u64::MAX,
        ] {
            let mut buf = Vec::new();
            put_uint(&mut buf, 1, v);
            let fields: Vec<_> = Fields::new(&buf).collect();
            if v == 0 {
                assert!(fields.is_empty());
            } else {
                assert_eq!(fields, vec![Ok((1, Value::Varint(v)))]);
            }
        }
        let mut buf = Vec::new();
        put_varint(&mut buf, (-62135596800i64) as u64);
        assert_eq!(buf.len(), 10);
        let mut buf = Vec::new();
        put_varint(&mut buf, 300);
        assert_eq!(buf, [0xac, 0x02]);
    }

    #[test]
    fn skips_every_wire_type_and_reads_lengths() {
        let mut buf = Vec::new();
        put_uint(&mut buf, 7, 5);
        buf.extend_from_slice(&[(8 << 3) | 1, 1, 2, 3, 4, 5, 6, 7, 8]);
        buf.extend_from_slice(&[(9 << 3) | 5, 1, 2, 3, 4]);
        put_len(&mut buf, 10, b"hi");
        put_len(&mut buf, 536_870_911, b"");
        let fields: Vec<_> = Fields::new(&buf).collect::<Result<_, _>>().unwrap();
        assert_eq!(
            fields,
            vec![
                (7, Value::Varint(5)),
                (8, Value::Fixed),
                (9, Value::Fixed),
                (10, Value::Len(b"hi")),
                (536_870_911, Value::Len(b"")),
            ]
        );
    }

    #[test]
    fn malformed_input_is_an_error_not_a_panic() {
        let cases: [(&[u8], WireError); 9] = [
            (&[0x08], WireError::Truncated),
            (&[0x08, 0x80], WireError::Truncated),
            (&[0x0a, 0x05, 1, 2], WireError::Truncated),
            (&[0x09, 1, 2, 3], WireError::Truncated),
            (&[0x0d, 1], WireError::Truncated),
            (&[0x00, 0x01], WireError::BadFieldNumber),
            (&[0x0b], WireError::UnsupportedWireType(3)),
            (&[0x0e], WireError::UnsupportedWireType(6)),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02,
                ],
                WireError::VarintOverflow,
            ),
        ];
        for (input, want) in cases {
            let mut fields = Fields::new(input);
            assert_eq!(fields.next(), Some(Err(want)), "{input:?}");
            assert_eq!(fields.next(), None);
        }
        // A length that does not fit the rest, even a huge one.
        let mut buf = vec![0x0a];
        put_varint(&mut buf, u64::MAX);
        assert_eq!(Fields::new(&buf).next(), Some(Err(WireError::Truncated)));
        // Eleven-byte varint.
        let buf = [
            0x08, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00,
        ];
        assert_eq!(
            Fields::new(&buf).next(),
            Some(Err(WireError::VarintOverflow))
        );
    }
}
