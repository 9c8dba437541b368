//! HPACK, the header compression of HTTP/2 (RFC 7541): a decoder for the header blocks a client
//! sends, and an encoder for the response header fields the server sends back. Free of I/O: it
//! turns one complete header block into fields and fields into bytes; framing (HEADERS,
//! CONTINUATION), SETTINGS and the meaning of the fields belong to the caller.
//!
//! * Decoding (§3): representations (§6.1 indexed, §6.2.1 literal with incremental indexing,
//!   §6.2.2 without indexing, §6.2.3 never indexed, §6.3 dynamic table size update), primitive
//!   types (§5.1 integers, §5.2 string literals, with [`huffman`] for Huffman-coded ones), the
//!   static table (§2.3.1, Appendix A) and the dynamic table (§2.3.2, §4: sizes with the 32-octet
//!   overhead, eviction of the oldest entries, an entry larger than the table empties it).
//! * Encoding: the server never adds to the peer's dynamic table, so the encoder has no state: it
//!   uses the static table (§6.1, or §6.2.2 with an indexed name) and otherwise literals without
//!   indexing (§6.2.2). That also means it never sends a dynamic table size update, whatever the
//!   client's SETTINGS_HEADER_TABLE_SIZE.
//!
//! What it must never do, whatever a client sends: panic; spend more than a bounded amount of
//! work per octet of the block (an integer has at most five continuation octets, an
//! implementation limit §5.1 allows, so a run of 0x80 octets fails at once); use
//! memory beyond what the block and the dynamic table size account for (strings are checked
//! against the block length before anything is copied; a field referenced many times is passed
//! to the caller by reference each time, never copied); or hand the caller more fields than its
//! header list size limit (RFC 9113 §6.5.2) allows. It passes names and values through as they
//! are: checking that names are lower-case and that pseudo-header fields come first is the HTTP/2
//! layer's job (RFC 9113 §8.2).
//!
//! Any [`DecodeError`] is a connection error of type COMPRESSION_ERROR (RFC 9113 §4.3): the
//! decoder's table may be half-updated afterwards, and the connection must not decode another
//! block with it.

#[path = "huffman.rs"]
pub mod huffman;

use std::collections::VecDeque;
use std::fmt;

/// What an entry costs in the dynamic table and in a header list beyond its name and value
/// (RFC 7541 §4.1, RFC 9113 §6.5.2).
pub const ENTRY_OVERHEAD: usize = 32;

/// The initial SETTINGS_HEADER_TABLE_SIZE of both peers (RFC 9113 §6.5.2).
pub const DEFAULT_TABLE_SIZE: usize = 4096;

/// Continuation octets an integer may have: five carry 35 bits, enough for any u32 after the
/// prefix. More can only be padding of zeros (or an attempt to keep the decoder busy).
const MAX_CONTINUATION_OCTETS: usize = 5;

/// Scratch capacity kept between blocks: enough for any usual header block, so decoding does not
/// allocate on each request, while a rare large block does not pin memory on an idle connection.
const SCRATCH_KEPT: usize = 16 * 1024;

/// Why a header block cannot be decoded. Every variant is a connection error of type
/// COMPRESSION_ERROR for the caller (RFC 9113 §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    /// The block ends inside a representation: in an integer, or before a string literal.
    Truncated,
    /// An integer above 2^32 - 1, or with more than five continuation octets (§5.1).
    IntegerOverflow,
    /// Index 0, or an index beyond the static and dynamic tables (§2.3.3, §6.1).
    InvalidIndex,
    /// A Huffman-coded string with the EOS symbol or with bad padding (§5.2).
    InvalidHuffman,
    /// A string literal whose length runs past the end of the block (§5.2).
    StringTooLong,
    /// A dynamic table size update above the SETTINGS_HEADER_TABLE_SIZE we advertised (§6.3).
    TableSizeUpdateTooLarge,
    /// A dynamic table size update after the first header field of the block (§4.2).
    TableSizeUpdateNotAtStart,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DecodeError::Truncated => "header block ends inside a representation",
            DecodeError::IntegerOverflow => {
                "integer above 2^32-1 or with more than 5 continuation octets"
            }
            DecodeError::InvalidIndex => "header field index 0 or beyond the tables",
            DecodeError::InvalidHuffman => "invalid Huffman-coded string",
            DecodeError::StringTooLong => "string literal longer than the rest of the block",
            DecodeError::TableSizeUpdateTooLarge => {
                "dynamic table size update above SETTINGS_HEADER_TABLE_SIZE"
            }
            DecodeError::TableSizeUpdateNotAtStart => {
                "dynamic table size update after a header field"
            }
        })
    }
}

impl std::error::Error for DecodeError {}

/// How a block that decoded without error turned out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decoded {
    /// Every field was passed to `emit`.
    Complete,
    /// The header list is larger than `max_list_size`: `emit` saw only the fields before the
    /// limit was passed. The dynamic table is up to date all the same; the caller refuses the
    /// request (e.g. 431) and the connection can go on.
    TooLarge,
}

/// The static table (RFC 7541 Appendix A); index 1 is the first entry.
const STATIC_TABLE: [(&[u8], &[u8]); 61] = [
    (b":authority", b""),
    (b":method", b"GET"),
    (b":method", b"POST"),
    (b":path", b"/"),
    (b":path", b"/index.html"),
    (b":scheme", b"http"),
    (b":scheme", b"https"),
    (b":status", b"200"),
    (b":status", b"204"),
    (b":status", b"206"),
    (b":status", b"304"),
    (b":status", b"400"),
    (b":status", b"404"),
    (b":status", b"500"),
    (b"accept-charset", b""),
    (b"accept-encoding", b"gzip, deflate"),
    (b"accept-language", b""),
    (b"accept-ranges", b""),
    (b"accept", b""),
    (b"access-control-allow-origin", b""),
    (b"age", b""),
    (b"allow", b""),
    (b"authorization", b""),
    (b"cache-control", b""),
    (b"content-disposition", b""),
    (b"content-encoding", b""),
    (b"content-language", b""),
    (b"content-length", b""),
    (b"content-location", b""),
    (b"content-range", b""),
    (b"content-type", b""),
    (b"cookie", b""),
    (b"date", b""),
    (b"etag", b""),
    (b"expect", b""),
    (b"expires", b""),
    (b"from", b""),
    (b"host", b""),
    (b"if-match", b""),
    (b"if-modified-since", b""),
    (b"if-none-match", b""),
    (b"if-range", b""),
    (b"if-unmodified-since", b""),
    (b"last-modified", b""),
    (b"link", b""),
    (b"location", b""),
    (b"max-forwards", b""),
    (b"proxy-authenticate", b""),
    (b"proxy-authorization", b""),
    (b"range", b""),
    (b"referer", b""),
    (b"refresh", b""),
    (b"retry-after", b""),
    (b"server", b""),
    (b"set-cookie", b""),
    (b"strict-transport-security", b""),
    (b"transfer-encoding", b""),
    (b"user-agent", b""),
    (b"vary", b""),
    (b"via", b""),
    (b"www-authenticate", b""),
];

/// The size of a field in the dynamic table and in a header list.
fn field_size(name: &[u8], value: &[u8]) -> usize {
    name.len()
        .saturating_add(value.len())
        .saturating_add(ENTRY_OVERHEAD)
}

/// A dynamic table entry: name and value in one allocation.
struct Entry {
    field: Box<[u8]>,
    name_len: usize,
}

impl Entry {
    fn new(name: &[u8], value: &[u8]) -> Entry {
        let mut field = Vec::with_capacity(name.len().saturating_add(value.len()));
        field.extend_from_slice(name);
        field.extend_from_slice(value);
        Entry {
            field: field.into_boxed_slice(),
            name_len: name.len(),
        }
    }

    fn name(&self) -> &[u8] {
        self.field.get(..self.name_len).unwrap_or_default()
    }

    fn value(&self) -> &[u8] {
        self.field.get(self.name_len..).unwrap_or_default()
    }

    fn size(&self) -> usize {
        self.field.len().saturating_add(ENTRY_OVERHEAD)
    }
}

/// The decoder's copy of the dynamic table (RFC 7541 §2.3.2, §4): newest entry first, the sum of
/// entry sizes never above `capacity`. So it holds at most `capacity` octets of fields in at
/// most `capacity / 32` entries.
struct DynamicTable {
    entries: VecDeque<Entry>,
    size: usize,
    capacity: usize,
}

impl DynamicTable {
    fn get(&self, index: usize) -> Option<&Entry> {
        self.entries.get(index)
    }

    fn evict_to(&mut self, limit: usize) {
        while self.size > limit {
            match self.entries.pop_back() {
                Some(entry) => self.size = self.size.saturating_sub(entry.size()),
                None => self.size = 0,
            }
        }
    }

    fn set_capacity(&mut self, capacity: usize) {
        self.capacity = capacity;
        self.evict_to(capacity);
    }

    /// Adds an entry that fits the table (§4.4): evicts the oldest entries to make room.
    fn insert(&mut self, entry: Entry) {
        let size = entry.size();
        self.evict_to(self.capacity.saturating_sub(size));
        self.size = self.size.saturating_add(size);
        self.entries.push_front(entry);
    }

    fn clear(&mut self) {
        self.entries.clear();
        self.size = 0;
    }
}

/// Decodes the header blocks of one connection (one direction: the client's requests), keeping
/// the dynamic table in step with the client's encoder.
pub struct Decoder {
    table: DynamicTable,
    max_table_size: usize,
    /// Where Huffman-coded names and values are decoded; kept between blocks (see
    /// `SCRATCH_KEPT`). Raw strings are passed straight from the block.
    name_scratch: Vec<u8>,
    value_scratch: Vec<u8>,
}

/// Shows sizes only: header values may be credentials.
impl fmt::Debug for Decoder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Decoder")
            .field("entries", &self.table.entries.len())
            .field("size", &self.table.size)
            .field("capacity", &self.table.capacity)
            .field("max_table_size", &self.max_table_size)
            .finish()
    }
}

impl Decoder {
    /// `max_table_size`: the SETTINGS_HEADER_TABLE_SIZE we advertise (4096); a dynamic table
    /// size update above it is an error. The table starts at this size: the peer's encoder
    /// starts at 4096 (RFC 9113 §6.5.2) until it has our SETTINGS, so advertise less than 4096
    /// only together with a way to cope with blocks encoded before the peer saw it.
    pub fn new(max_table_size: usize) -> Decoder {
        Decoder {
            table: DynamicTable {
                entries: VecDeque::new(),
                size: 0,
                capacity: max_table_size,
            },
            max_table_size,
            name_scratch: Vec::new(),
            value_scratch: Vec::new(),
        }
    }

    /// Decodes one complete header block (HEADERS + CONTINUATION fragments already joined).
    /// Calls `emit(name, value)` for each field in order while the decoded header list size
    /// (RFC 9113 §6.5.2: sum of name.len() + value.len() + 32) stays within `max_list_size`.
    /// Beyond that it keeps decoding (so the dynamic table stays in step with the peer's encoder)
    /// but emits nothing more, and returns `Ok(Decoded::TooLarge)`. Otherwise
    /// `Ok(Decoded::Complete)`.
    ///
    /// Memory use is bounded by the block length and the table size whatever the input: a block
    /// that references one large table entry many times costs CPU proportional to the block,
    /// never memory.
    pub fn decode(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        emit: impl FnMut(&[u8], &[u8]),
    ) -> Result<Decoded, DecodeError> {
        let result = self.decode_block(block, max_list_size, emit);
        for scratch in [&mut self.name_scratch, &mut self.value_scratch] {
            if scratch.capacity() > SCRATCH_KEPT {
                *scratch = Vec::new();
            }
        }
        result
    }

    fn decode_block(
        &mut self,
        block: &[u8],
        max_list_size: usize,
        mut emit: impl FnMut(&[u8], &[u8]),
    ) -> Result<Decoded, DecodeError> {
        let Decoder {
            table,
            max_table_size,
            name_scratch,
            value_scratch,
        } = self;
        let mut input = Reader { rest: block };
        let mut list_size: usize = 0;
        let mut too_large = false;
        let mut seen_field = false;
        while let Some(&first) = input.rest.first() {
            let (name, value, indexing) = if first & 0x80 != 0 {
                // §6.1 Indexed Header Field.
                let (name, value) = lookup(table, input.integer(7)?)?;
                (name, value, false)
            } else if first & 0xe0 == 0x20 {
                // §6.3 Dynamic Table Size Update.
                if seen_field {
                    return Err(DecodeError::TableSizeUpdateNotAtStart);
                }
                let size = input.integer(5)?;
                if size > *max_table_size {
                    return Err(DecodeError::TableSizeUpdateTooLarge);
                }
                table.set_capacity(size);
                continue;
            } else {
                // §6.2.1 with incremental indexing (01), §6.2.2 without indexing (0000) and
                // §6.2.3 never indexed (0001): the last two differ only for intermediaries.
                let indexing = first & 0x40 != 0;
                let name_index = input.integer(if indexing { 6 } else { 4 })?;
                let name = if name_index == 0 {
                    let (raw, huffman) = input.string()?;
                    string_value(raw, huffman, name_scratch)?
                } else {
                    lookup(table, name_index)?.0
                };
                let (raw, huffman) = input.string()?;
                let value = string_value(raw, huffman, value_scratch)?;
                (name, value, indexing)
            };
            seen_field = true;
            let size = field_size(name, value);
            list_size = list_size.saturating_add(size);
            if !too_large && list_size <= max_list_size {
                emit(name, value);
            } else {
                too_large = true;
            }
            if indexing {
                // Copied before inserting evicts anything: `name` may be the entry that makes
                // room for this one (§4.4).
                if size <= table.capacity {
                    let entry = Entry::new(name, value);
                    table.insert(entry);
                } else {
                    table.clear();
                }
            }
        }
        Ok(if too_large {
            Decoded::TooLarge
        } else {
            Decoded::Complete
        })
    }

    /// The size of the dynamic table (sum of entry sizes, §4.1).
    pub fn table_size(&self) -> usize {
        self.table.size
    }

    /// The maximum size of the dynamic table: the last size update, or `max_table_size`.
    pub fn table_capacity(&self) -> usize {
        self.table.capacity
    }

    /// The dynamic table's entries, newest (index 62) first.
    pub fn table_entries(&self) -> impl Iterator<Item = (&[u8], &[u8])> + '_ {
        self.table.entries.iter().map(|e| (e.name(), e.value()))
    }
}

/// The field at `index` of the combined index space (§2.3.3): the static table, then the dynamic
/// table.
fn lookup(table: &DynamicTable, index: usize) -> Result<(&[u8], &[u8]), DecodeError> {
    let Some(index) = index.checked_sub(1) else {
        return Err(DecodeError::InvalidIndex);
    };
    if let Some(&field) = STATIC_TABLE.get(index) {
        return Ok(field);
    }
    table
        .get(index - STATIC_TABLE.len())
        .map(|e| (e.name(), e.value()))
        .ok_or(DecodeError::InvalidIndex)
}

/// A string literal's octets: raw ones as they are in the block, Huffman-coded ones decoded into
/// `scratch`.
fn string_value<'a>(
    raw: &'a [u8],
    huffman: bool,
    scratch: &'a mut Vec<u8>,
) -> Result<&'a [u8], DecodeError> {
    if !huffman {
        return Ok(raw);
    }
    scratch.clear();
    huffman::decode(raw, scratch).map_err(|_| DecodeError::InvalidHuffman)?;
    Ok(scratch)
}

/// The unread rest of a header block.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Result<u8, DecodeError> {
        let (&byte, rest) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
        self.rest = rest;
        Ok(byte)
    }

    /// An integer with an N-bit prefix (§5.1), N from 1 to 8; the bits above the prefix in the
    /// first octet are the caller's.
    fn integer(&mut self, prefix_bits: u32) -> Result<usize, DecodeError> {
        let max_prefix = u8::MAX >> (8 - prefix_bits);
        let prefix = self.byte()? & max_prefix;
        if prefix < max_prefix {
            return Ok(usize::from(prefix));
        }
        let mut value = u64::from(prefix);
        for i in 0..MAX_CONTINUATION_OCTETS {
            let octet = self.byte()?;
            // At most 255 + 35 bits: no overflow in u64.
            value += u64::from(octet & 0x7f) << (7 * i);
            if octet & 0x80 == 0 {
                return u32::try_from(value)
                    .ok()
                    .and_then(|v| usize::try_from(v).ok())
                    .ok_or(DecodeError::IntegerOverflow);
            }
        }
        Err(DecodeError::IntegerOverflow)
    }

    /// A string literal (§5.2): its octets as they are in the block, and whether they are
    /// Huffman-coded.
    fn string(&mut self) -> Result<(&'a [u8], bool), DecodeError> {
        let huffman = self.rest.first().ok_or(DecodeError::Truncated)? & 0x80 != 0;
        let len = self.integer(7)?;
        let (octets, rest) = self
            .rest
            .split_at_checked(len)
            .ok_or(DecodeError::StringTooLong)?;
        self.rest = rest;
        Ok((octets, huffman))
    }
}

/// Appends an integer with an N-bit prefix (§5.1); `flags` holds the bits above the prefix.
fn encode_integer(value: usize, prefix_bits: u32, flags: u8, out: &mut Vec<u8>) {
    let max_prefix = u8::MAX >> (8 - prefix_bits);
    if value < usize::from(max_prefix) {
        out.push(flags | value as u8);
        return;
    }
    out.push(flags | max_prefix);
    let mut rest = value - usize::from(max_prefix);
    while rest >= 0x80 {
        out.push(0x80 | (rest & 0x7f) as u8);
        rest >>= 7;
    }
    out.push(rest as u8);
}

/// Appends a string literal (§5.2), Huffman-coded when that is shorter. The server's response
/// fields are lower-case tokens and digits, where the code saves about a quarter
/// (`application/json`: 11 octets instead of 16, `text/plain; version=0.0.4`: 18 instead of 25, a
/// 3- or 4-digit content length: one octet less); counting the coded length first costs a table
/// lookup per octet (measured: the three fields of a usual reply in about 145 ns). Strings with upper-case
/// letters or symbols can grow when coded, and are then sent raw.
fn encode_string(s: &[u8], out: &mut Vec<u8>) {
    let coded_len = huffman::encoded_len(s);
    if coded_len < s.len() {
        encode_integer(coded_len, 7, 0x80, out);
        huffman::encode(s, out);
    } else {
        encode_integer(s.len(), 7, 0x00, out);
        out.extend_from_slice(s);
    }
}

/// Appends the `:status` pseudo-header field of a response: one octet for the seven codes of the
/// static table (200, 204, 206, 304, 400, 404, 500), else a literal with the indexed name.
pub fn encode_status(status: u16, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20];
    encode_field(
        b":status",
        crate::server::message::decimal(u64::from(status), &mut digits),
        out,
    );
}

/// Appends one response header field; `name` must be lower-case (RFC 9113 §8.2.1; not checked
/// here). Never adds to the peer's dynamic table (so it needs no state about the peer's table
/// and no table size update): a static-table index when the whole field matches (e.g.
/// `:status: 200` is index 8), otherwise a literal without indexing (§6.2.2), with the static
/// table's index for the name when it has the name.
pub fn encode_field(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
    let mut name_index = None;
    for (i, &(static_name, static_value)) in STATIC_TABLE.iter().enumerate() {
        if static_name == name {
            if static_value == value {
                encode_integer(i + 1, 7, 0x80, out);
                return;
            }
            name_index.get_or_insert(i + 1);
        }
    }
    match name_index {
        Some(index) => encode_integer(index, 4, 0x00, out),
        None => {
            out.push(0x00);
            encode_string(name, out);
        }
    }
    encode_string(value, out);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(|b| b.is_ascii_hexdigit()).collect();
        digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).unwrap(), 16).unwrap())
            .collect()
    }

    type Fields = Vec<(Vec<u8>, Vec<u8>)>;

    fn decode(
        d: &mut Decoder,
        block: &[u8],
        limit: usize,
    ) -> (Result<Decoded, DecodeError>, Fields) {
        let mut fields = Vec::new();
        let result = d.decode(block, limit, |n, v| fields.push((n.to_vec(), v.to_vec())));
        (result, fields)
    }

    fn decode_ok(d: &mut Decoder, block: &[u8]) -> Fields {
        let (result, fields) = decode(d, block, usize::MAX);
        assert_eq!(result, Ok(Decoded::Complete));
        fields
    }

    fn decode_err(block: &[u8]) -> DecodeError {
        decode(&mut Decoder::new(4096), block, usize::MAX)
            .0
            .unwrap_err()
    }

    fn pairs(fields: &[(&str, &str)]) -> Fields {
        fields
            .iter()
            .map(|(n, v)| (n.as_bytes().to_vec(), v.as_bytes().to_vec()))
            .collect()
    }

    fn table(d: &Decoder) -> Fields {
        d.table_entries()
            .map(|(n, v)| (n.to_vec(), v.to_vec()))
            .collect()
    }

    /// One block of an Appendix C sequence: the block, the header list, and the dynamic table
    /// afterwards (newest first) with its size.
    struct Step {
        block: &'static str,
        fields: &'static [(&'static str, &'static str)],
        table: &'static [(&'static str, &'static str)],
        size: usize,
    }

    fn run_sequence(table_size: usize, steps: &[Step]) {
        let mut d = Decoder::new(table_size);
        for (i, step) in steps.iter().enumerate() {
            assert_eq!(
                decode_ok(&mut d, &hex(step.block)),
                pairs(step.fields),
                "block {i}"
            );
            assert_eq!(table(&d), pairs(step.table), "table after block {i}");
            assert_eq!(d.table_size(), step.size, "table size after block {i}");
        }
    }

    #[test]
    fn appendix_c2_single_representations() {
        // C.2.1 literal with indexing, C.2.2 without indexing, C.2.3 never indexed, C.2.4 indexed.
        let cases: [(&str, (&str, &str), usize); 4] = [
            (
                "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572",
                ("custom-key", "custom-header"),
                55,
            ),
            (
                "040c 2f73 616d 706c 652f 7061 7468",
                (":path", "/sample/path"),
                0,
            ),
            (
                "1008 7061 7373 776f 7264 0673 6563 7265 74",
                ("password", "secret"),
                0,
            ),
            ("82", (":method", "GET"), 0),
        ];
        for (block, field, size) in cases {
            let mut d = Decoder::new(4096);
            assert_eq!(decode_ok(&mut d, &hex(block)), pairs(&[field]), "{block}");
            assert_eq!(d.table_size(), size, "{block}");
            let expected = if size > 0 { pairs(&[field]) } else { vec![] };
            assert_eq!(table(&d), expected, "{block}");
        }
    }

    const AUTHORITY: (&str, &str) = (":authority", "www.example.com");
    const NO_CACHE: (&str, &str) = ("cache-control", "no-cache");
    const CUSTOM: (&str, &str) = ("custom-key", "custom-value");

    fn requests(blocks: [&'static str; 3]) -> [Step; 3] {
        [
            Step {
                block: blocks[0],
                fields: &[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    AUTHORITY,
                ],
                table: &[AUTHORITY],
                size: 57,
            },
            Step {
                block: blocks[1],
                fields: &[
                    (":method", "GET"),
                    (":scheme", "http"),
                    (":path", "/"),
                    AUTHORITY,
                    NO_CACHE,
                ],
                table: &[NO_CACHE, AUTHORITY],
                size: 110,
            },
            Step {
                block: blocks[2],
                fields: &[
                    (":method", "GET"),
                    (":scheme", "https"),
                    (":path", "/index.html"),
                    AUTHORITY,
                    CUSTOM,
                ],
                table: &[CUSTOM, NO_CACHE, AUTHORITY],
                size: 164,
            },
        ]
    }

    #[test]
    fn appendix_c3_requests_without_huffman() {
        run_sequence(
            4096,
            &requests([
                "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d",
                "8286 84be 5808 6e6f 2d63 6163 6865",
                "8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65",
            ]),
        );
    }

    #[test]
    fn appendix_c4_requests_with_huffman() {
        run_sequence(
            4096,
            &requests([
                "8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff",
                "8286 84be 5886 a8eb 1064 9cbf",
                "8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf",
            ]),
        );
    }

    const DATE_21: (&str, &str) = ("date", "Mon, 21 Oct 2013 20:13:21 GMT");
    const DATE_22: (&str, &str) = ("date", "Mon, 21 Oct 2013 20:13:22 GMT");
    const LOCATION: (&str, &str) = ("location", "https://www.example.com");
    const PRIVATE: (&str, &str) = ("cache-control", "private");
    const COOKIE: (&str, &str) = (
        "set-cookie",
        "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1",
    );

    /// C.5 and C.6: a 256-octet table, so the second and third responses evict.
    fn responses(blocks: [&'static str; 3]) -> [Step; 3] {
        [
            Step {
                block: blocks[0],
                fields: &[(":status", "302"), PRIVATE, DATE_21, LOCATION],
                table: &[LOCATION, DATE_21, PRIVATE, (":status", "302")],
                size: 222,
            },
            Step {
                block: blocks[1],
                fields: &[(":status", "307"), PRIVATE, DATE_21, LOCATION],
                table: &[(":status", "307"), LOCATION, DATE_21, PRIVATE],
                size: 222,
            },
            Step {
                block: blocks[2],
                fields: &[
                    (":status", "200"),
                    PRIVATE,
                    DATE_22,
                    LOCATION,
                    ("content-encoding", "gzip"),
                    COOKIE,
                ],
                table: &[COOKIE, ("content-encoding", "gzip"), DATE_22],
                size: 215,
            },
        ]
    }

    #[test]
    fn appendix_c5_responses_without_huffman() {
        run_sequence(
            256,
            &responses([
                "4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133
                 2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70
                 6c65 2e63 6f6d",
                "4803 3330 37c1 c0bf",
                "88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d
                 54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049
                 5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e
                 3d31",
            ]),
        );
    }

    #[test]
    fn appendix_c6_responses_with_huffman() {
        run_sequence(
            256,
            &responses([
                "4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6
                 2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
                "4883 640e ffc1 c0bf",
                "88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab
                 77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f
                 9587 3160 65c0 03ed 4ee5 b106 3d50 07",
            ]),
        );
    }

    #[test]
    fn static_table_is_appendix_a() {
        assert_eq!(STATIC_TABLE.len(), 61);
        let d = Decoder::new(0);
        let at = |i| lookup(&d.table, i).unwrap();
        assert_eq!(at(1), (&b":authority"[..], &b""[..]));
        assert_eq!(at(2), (&b":method"[..], &b"GET"[..]));
        assert_eq!(at(8), (&b":status"[..], &b"200"[..]));
        assert_eq!(at(14), (&b":status"[..], &b"500"[..]));
        assert_eq!(at(16), (&b"accept-encoding"[..], &b"gzip, deflate"[..]));
        assert_eq!(at(28), (&b"content-length"[..], &b""[..]));
        assert_eq!(at(31), (&b"content-type"[..], &b""[..]));
        assert_eq!(at(58), (&b"user-agent"[..], &b""[..]));
        assert_eq!(at(61), (&b"www-authenticate"[..], &b""[..]));
        assert_eq!(lookup(&d.table, 0), Err(DecodeError::InvalidIndex));
        assert_eq!(lookup(&d.table, 62), Err(DecodeError::InvalidIndex));
        // Names are lower-case, in the order of the RFC's listing (alphabetical after the
        // pseudo-header fields, with `accept` where the RFC has it).
        for (name, _) in STATIC_TABLE {
            assert!(!name.iter().any(u8::is_ascii_uppercase));
        }
    }

    fn integer(prefix_bits: u32, bytes: &[u8]) -> Result<(usize, usize), DecodeError> {
        let mut r = Reader { rest: bytes };
        let value = r.integer(prefix_bits)?;
        Ok((value, bytes.len() - r.rest.len()))
    }

    #[test]
    fn integers() {
        // RFC 7541 C.1.1-C.1.3.
        assert_eq!(integer(5, &[0x0a]), Ok((10, 1)));
        assert_eq!(integer(5, &[0x1f, 0x9a, 0x0a]), Ok((1337, 3)));
        assert_eq!(integer(8, &[0x2a]), Ok((42, 1)));
        // Bits above the prefix are ignored.
        assert_eq!(integer(5, &[0xff, 0x9a, 0x0a]), Ok((1337, 3)));
        // The prefix's maximum needs a continuation octet, even a zero one.
        assert_eq!(integer(5, &[0x1e]), Ok((30, 1)));
        assert_eq!(integer(5, &[0x1f, 0x00]), Ok((31, 2)));
        assert_eq!(integer(1, &[0x01, 0x00]), Ok((1, 2)));
        assert_eq!(integer(8, &[0xff, 0x00]), Ok((255, 2)));
        assert_eq!(integer(5, &[0x1f]), Err(DecodeError::Truncated));
        assert_eq!(integer(5, &[0x1f, 0x80]), Err(DecodeError::Truncated));
        assert_eq!(integer(5, &[]), Err(DecodeError::Truncated));
        // Redundant zero continuation octets, up to the limit of five.
        assert_eq!(
            integer(7, &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Ok((127, 6))
        );
        assert_eq!(
            integer(7, &[0x7f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00]),
            Err(DecodeError::IntegerOverflow)
        );
        // The largest value, u32::MAX, and one more.
        for prefix_bits in 1..=8 {
            for value in [
                0,
                1,
                30,
                31,
                127,
                128,
                255,
                256,
                1337,
                16_383,
                16_384,
                u32::MAX as usize,
            ] {
                let mut out = Vec::new();
                encode_integer(value, prefix_bits, 0, &mut out);
                assert!(out.len() <= 1 + MAX_CONTINUATION_OCTETS);
                assert_eq!(
                    integer(prefix_bits, &out),
                    Ok((value, out.len())),
                    "{value}"
                );
            }
            let mut out = Vec::new();
            encode_integer(u32::MAX as usize + 1, prefix_bits, 0, &mut out);
            assert_eq!(
                integer(prefix_bits, &out),
                Err(DecodeError::IntegerOverflow)
            );
        }
        // Five continuation octets with all bits set: 35 bits.
        assert_eq!(
            integer(8, &[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            Err(DecodeError::IntegerOverflow)
        );
    }

    #[test]
    fn endless_continuation_fails_fast() {
        let mut block = vec![0xff];
        block.resize(1 << 20, 0x80);
        let mut r = Reader { rest: &block };
        assert_eq!(r.integer(7), Err(DecodeError::IntegerOverflow));
        assert_eq!(r.rest.len(), block.len() - 1 - MAX_CONTINUATION_OCTETS);
        assert_eq!(decode_err(&block), DecodeError::IntegerOverflow);
        block[0] = 0x0f; // a literal's name index
        assert_eq!(decode_err(&block), DecodeError::IntegerOverflow);
    }

    #[test]
    fn every_error() {
        use DecodeError::*;
        // Truncated: inside an integer, before a name or a value string.
        assert_eq!(decode_err(&[0xff]), Truncated);
        assert_eq!(decode_err(&[0x3f]), Truncated);
        assert_eq!(decode_err(&[0x40]), Truncated);
        assert_eq!(decode_err(&[0x00, 0x01, b'a']), Truncated);
        assert_eq!(decode_err(&[0x10, 0x01, b'a']), Truncated);
        assert_eq!(decode_err(&[0x41]), Truncated);
        assert_eq!(decode_err(&[0x0f]), Truncated);
        assert_eq!(decode_err(&[0x01, 0xff]), Truncated);
        // IntegerOverflow, also in a string length.
        assert_eq!(
            decode_err(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            IntegerOverflow
        );
        assert_eq!(
            decode_err(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]),
            IntegerOverflow
        );
        // InvalidIndex: 0, past the static table with an empty dynamic table, as a name too.
        assert_eq!(decode_err(&[0x80]), InvalidIndex);
        assert_eq!(decode_err(&[0xbe]), InvalidIndex);
        assert_eq!(decode_err(&[0x7e, 0x00]), InvalidIndex);
        assert_eq!(decode_err(&[0x0f, 0x2f, 0x00]), InvalidIndex);
        assert_eq!(
            decode_err(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x07]),
            InvalidIndex
        );
        let mut d = Decoder::new(4096);
        decode_ok(&mut d, &[0x40, 0x01, b'a', 0x01, b'b']);
        assert_eq!(decode_ok(&mut d, &[0xbe]), pairs(&[("a", "b")]));
        assert_eq!(decode(&mut d, &[0xbf], usize::MAX).0, Err(InvalidIndex));
        // InvalidHuffman, in a name and in a value.
        assert_eq!(decode_err(&[0x00, 0x81, 0xff, 0x00]), InvalidHuffman);
        assert_eq!(decode_err(&[0x01, 0x81, 0x00]), InvalidHuffman);
        assert_eq!(
            decode_err(&[0x01, 0x84, 0xff, 0xff, 0xff, 0xff]),
            InvalidHuffman
        );
        // StringTooLong: the length runs past the block.
        assert_eq!(decode_err(&[0x00, 0x05, b'a']), StringTooLong);
        assert_eq!(decode_err(&[0x01, 0x02, b'a']), StringTooLong);
        assert_eq!(
            decode_err(&[0x01, 0xff, 0xff, 0xff, 0xff, 0xff, 0x07]),
            StringTooLong
        );
        // TableSizeUpdateTooLarge.
        let mut update = Vec::new();
        encode_integer(4097, 5, 0x20, &mut update);
        assert_eq!(decode_err(&update), TableSizeUpdateTooLarge);
        assert_eq!(
            decode(&mut Decoder::new(0), &[0x21], usize::MAX).0,
            Err(TableSizeUpdateTooLarge)
        );
        // TableSizeUpdateNotAtStart.
        assert_eq!(decode_err(&[0x82, 0x20]), TableSizeUpdateNotAtStart);
        assert_eq!(
            decode_err(&[0x20, 0x82, 0x3f, 0xe1, 0x1f]),
            TableSizeUpdateNotAtStart
        );
        // Every variant has a message.
        for e in [
            Truncated,
            IntegerOverflow,
            InvalidIndex,
            InvalidHuffman,
            StringTooLong,
            TableSizeUpdateTooLarge,
            TableSizeUpdateNotAtStart,
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn table_size_updates() {
        let mut d = Decoder::new(4096);
        // Up to the limit, twice at the start of a block (§4.2: the smallest, then the final).
        let mut block = Vec::new();
        encode_integer(4096, 5, 0x20, &mut block);
        assert_eq!(block, [0x3f, 0xe1, 0x1f]);
        block.extend_from_slice(&[0x20, 0x3f, 0xe1, 0x1f, 0x82]);
        assert_eq!(decode_ok(&mut d, &block), pairs(&[(":method", "GET")]));
        assert_eq!(d.table_capacity(), 4096);
        // An empty block, and a block of updates only.
        assert_eq!(decode_ok(&mut d, &[]), pairs(&[]));
        assert_eq!(decode_ok(&mut d, &[0x3f, 0x01]), pairs(&[]));
        assert_eq!(d.table_capacity(), 32);
        // Shrinking evicts the oldest entries; zero empties the table.
        let mut d = Decoder::new(4096);
        decode_ok(
            &mut d,
            &[0x40, 0x01, b'a', 0x01, b'1', 0x40, 0x01, b'b', 0x01, b'2'],
        );
        assert_eq!(d.table_size(), 68);
        decode_ok(&mut d, &[0x3f, 0x15]); // 52
        assert_eq!(table(&d), pairs(&[("b", "2")]));
        assert_eq!(d.table_size(), 34);
        decode_ok(&mut d, &[0x20]);
        assert_eq!(table(&d), pairs(&[]));
        assert_eq!(d.table_size(), 0);
        // With capacity 0 nothing is added, and indexing still succeeds.
        assert_eq!(
            decode_ok(&mut d, &[0x41, 0x01, b'x']),
            pairs(&[(":authority", "x")])
        );
        assert_eq!(d.table_size(), 0);
        // Growing back (up to max_table_size) is allowed.
        decode_ok(&mut d, &[0x3f, 0xe1, 0x1f, 0x41, 0x01, b'x']);
        assert_eq!(table(&d), pairs(&[(":authority", "x")]));
    }

    #[test]
    fn eviction() {
        // Capacity 100: two entries of 34 and one of 33 do not fit together.
        let mut d = Decoder::new(100);
        decode_ok(&mut d, &[0x40, 0x01, b'a', 0x01, b'1']);
        decode_ok(&mut d, &[0x40, 0x01, b'b', 0x01, b'2']);
        assert_eq!(d.table_size(), 68);
        decode_ok(&mut d, &[0x40, 0x01, b'c', 0x00]);
        assert_eq!(table(&d), pairs(&[("c", ""), ("b", "2")]));
        assert_eq!(d.table_size(), 67);
        // An entry of exactly the capacity fits alone.
        let value = [b'v'; 67];
        let mut block = vec![0x40, 0x01, b'd', 67];
        block.extend_from_slice(&value);
        decode_ok(&mut d, &block);
        assert_eq!(d.table_size(), 100);
        assert_eq!(table(&d).len(), 1);
        // One octet more empties the table, and is still emitted.
        block[3] = 68;
        block.push(b'v');
        let fields = decode_ok(&mut d, &block);
        assert_eq!(fields[0].1.len(), 68);
        assert_eq!(d.table_size(), 0);
        assert_eq!(table(&d), pairs(&[]));
        // §4.4: a new entry may name the entry that its insertion evicts.
        let mut d = Decoder::new(80);
        decode_ok(&mut d, &[0x40, 0x04, b'n', b'a', b'm', b'e', 0x01, b'1']); // 37
        let fields = decode_ok(
            &mut d,
            &[
                0x7e, 0x0a, b'0', b'1', b'2', b'3', b'4', b'5', b'6', b'7', b'8', b'9',
            ],
        );
        assert_eq!(fields, pairs(&[("name", "0123456789")]));
        assert_eq!(table(&d), pairs(&[("name", "0123456789")]));
        assert_eq!(d.table_size(), 46);
    }

    #[test]
    fn never_indexed_and_without_indexing_leave_the_table_alone() {
        let mut d = Decoder::new(4096);
        let fields = decode_ok(
            &mut d,
            &[
                0x00, 0x01, b'a', 0x01, b'1', 0x10, 0x01, b'b', 0x01, b'2', 0x1f, 0x08, 0x01, b'3',
            ],
        );
        assert_eq!(
            fields,
            pairs(&[("a", "1"), ("b", "2"), ("authorization", "3")])
        );
        assert_eq!(d.table_size(), 0);
    }

    #[test]
    fn names_and_values_pass_through_as_they_are() {
        let mut d = Decoder::new(4096);
        let fields = decode_ok(
            &mut d,
            &[
                0x00, 0x03, b'A', 0, 0xff, 0x02, b'\r', b'\n', 0x00, 0x00, 0x00,
            ],
        );
        assert_eq!(
            fields,
            vec![(b"A\0\xff".to_vec(), b"\r\n".to_vec()), (vec![], vec![])]
        );
    }

    #[test]
    fn header_list_limit() {
        // Three fields of 34 each: limits around 34, 68 and 102.
        let block = [
            0x40, 0x01, b'a', 0x01, b'1', 0xbe, 0x00, 0x01, b'b', 0x01, b'2',
        ];
        for (limit, emitted, result) in [
            (0, 0, Decoded::TooLarge),
            (33, 0, Decoded::TooLarge),
            (34, 1, Decoded::TooLarge),
            (67, 1, Decoded::TooLarge),
            (68, 2, Decoded::TooLarge),
            (101, 2, Decoded::TooLarge),
            (102, 3, Decoded::Complete),
        ] {
            let mut d = Decoder::new(4096);
            let (r, fields) = decode(&mut d, &block, limit);
            assert_eq!(r, Ok(result), "limit {limit}");
            assert_eq!(fields.len(), emitted, "limit {limit}");
            // The table is the same whatever the limit.
            assert_eq!(table(&d), pairs(&[("a", "1")]), "limit {limit}");
        }
        // Once over the limit, later small fields are not emitted either.
        let mut d = Decoder::new(4096);
        let mut block = vec![0x00, 0x01, b'x', 0x7f, 0x01];
        block.extend_from_slice(&[b'y'; 128]);
        block.push(0x82);
        let (r, fields) = decode(&mut d, &block, 100);
        assert_eq!((r, fields.len()), (Ok(Decoded::TooLarge), 0));
        // An error after the limit is still an error.
        let (r, _) = decode(&mut d, &[0x82, 0x82, 0x80], 0);
        assert_eq!(r, Err(DecodeError::InvalidIndex));
    }

    /// A 16 KiB block that references a 4 KiB entry 16 384 times would be a 64 MiB header list:
    /// emit sees only what the limit allows, and the decoder copies nothing.
    #[test]
    fn hpack_bomb_is_bounded() {
        let mut d = Decoder::new(4096);
        let value = vec![b'x'; 4096 - 32 - 1];
        let mut first = vec![0x40, 0x01, b'b'];
        encode_integer(value.len(), 7, 0, &mut first);
        first.extend_from_slice(&value);
        decode_ok(&mut d, &first);
        assert_eq!(d.table_size(), 4096);

        let bomb = vec![0xbe; 16 * 1024];
        let limit = 16 * 1024;
        let mut calls = 0;
        let mut emitted = 0;
        let start = std::time::Instant::now();
        let r = d.decode(&bomb, limit, |n, v| {
            calls += 1;
            emitted += n.len() + v.len() + 32;
        });
        assert_eq!(r, Ok(Decoded::TooLarge));
        assert_eq!(calls, 4);
        assert!(emitted <= limit);
        assert!(start.elapsed() < std::time::Duration::from_secs(1));
        // No copies: the scratch buffers were never used, the table holds one entry.
        assert_eq!(d.name_scratch.capacity() + d.value_scratch.capacity(), 0);
        assert_eq!(d.table.entries.len(), 1);
        // Huffman-coded strings are decoded at most once per literal, into bounded scratch.
        let mut big = vec![0x00, 0x01, b'a'];
        let text = vec![b'a'; 30_000];
        encode_integer(huffman::encoded_len(&text), 7, 0x80, &mut big);
        huffman::encode(&text, &mut big);
        let (r, _) = decode(&mut d, &big, 100);
        assert_eq!(r, Ok(Decoded::TooLarge));
        // A large scratch buffer is not kept for the next block.
        assert_eq!(d.value_scratch.capacity(), 0);
    }

    use crate::testing::XorShift;

    #[test]
    fn encoder_output() {
        let enc = |name: &[u8], value: &[u8]| {
            let mut out = Vec::new();
            encode_field(name, value, &mut out);
            out
        };
        let status = |s| {
            let mut out = Vec::new();
            encode_status(s, &mut out);
            out
        };
        assert_eq!(status(200), [0x88]);
        assert_eq!(status(204), [0x89]);
        assert_eq!(status(500), [0x8e]);
        // Not in the static table: literal without indexing, name index 8; "302" is shorter
        // Huffman-coded (C.6.1), "403" is not (17 bits).
        assert_eq!(status(302), [0x08, 0x82, 0x64, 0x02]);
        assert_eq!(status(403), [0x08, 0x03, b'4', b'0', b'3']);
        assert_eq!(enc(b":method", b"POST"), [0x83]);
        assert_eq!(enc(b"accept-encoding", b"gzip, deflate"), [0x90]);
        assert_eq!(enc(b"www-authenticate", b""), [0xbd]);
        // content-type (31): the name index needs a continuation octet in a 4-bit prefix.
        let ct = enc(b"content-type", b"application/json");
        assert_eq!(&ct[..2], [0x0f, 0x10]);
        assert_eq!(ct[2], 0x80 | 11, "Huffman: 11 octets instead of 16");
        assert_eq!(ct.len(), 14);
        // Names outside the static table; strings that Huffman would not shorten are raw.
        assert_eq!(
            enc(b"x-a", b"\0"),
            [0x00, 0x03, b'x', b'-', b'a', 0x01, 0x00]
        );
        // As in RFC 7541 C.4.3, but without indexing.
        assert_eq!(
            enc(b"custom-key", b"custom-value"),
            hex("0088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf")
        );
        assert_eq!(enc(b"", b""), [0x00, 0x00, 0x00]);
    }

    #[test]
    fn encoder_round_trips_through_the_decoder() {
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let token = b"abcdefghijklmnopqrstuvwxyz0123456789-_.";
        let mut d = Decoder::new(4096);
        for round in 0..3_000 {
            let mut expected = Vec::new();
            let mut block = Vec::new();
            for _ in 0..rng.below(8) {
                let name = match rng.below(3) {
                    0 => STATIC_TABLE[rng.below(61)].0.to_vec(),
                    1 => {
                        let len = rng.below(20);
                        rng.bytes(len, token)
                    }
                    _ => {
                        let len = rng.below(20);
                        rng.bytes(len, &[])
                    }
                };
                let value = match rng.below(4) {
                    0 => STATIC_TABLE[rng.below(61)].1.to_vec(),
                    1 => {
                        let len = rng.below(300);
                        rng.bytes(len, token)
                    }
                    2 => {
                        let len = rng.below(300);
                        rng.bytes(len, b"ABCXYZ;=/?#!\"\\ ")
                    }
                    _ => {
                        let len = rng.below(200);
                        rng.bytes(len, &[])
                    }
                };
                encode_field(&name, &value, &mut block);
                expected.push((name, value));
            }
            if rng.below(4) == 0 {
                let status = 100 + rng.below(900) as u16;
                encode_status(status, &mut block);
                expected.push((b":status".to_vec(), status.to_string().into_bytes()));
            }
            // One decoder for all blocks: the encoder never touches the table.
            assert_eq!(decode_ok(&mut d, &block), expected, "round {round}");
            assert_eq!(d.table_size(), 0);
        }
    }

    #[test]
    fn every_status_round_trips() {
        let mut d = Decoder::new(4096);
        for status in (0..=1100).chain([u16::MAX]) {
            let mut block = Vec::new();
            encode_status(status, &mut block);
            let expected = pairs(&[(":status", &status.to_string())]);
            assert_eq!(decode_ok(&mut d, &block), expected);
        }
    }

    /// A literal with incremental indexing and Huffman-coded strings, as Go's and most clients'
    /// encoders send a field the first time.
    fn indexed_literal(name: &[u8], value: &[u8], out: &mut Vec<u8>) {
        match STATIC_TABLE.iter().position(|&(n, _)| n == name) {
            Some(i) => encode_integer(i + 1, 6, 0x40, out),
            None => {
                out.push(0x40);
                encode_integer(huffman::encoded_len(name), 7, 0x80, out);
                huffman::encode(name, out);
            }
        }
        encode_integer(huffman::encoded_len(value), 7, 0x80, out);
        huffman::encode(value, out);
    }

    /// The first and a later request of a MinIO-like client on one connection: the first block
    /// is all literals (Huffman-coded, added to the table), the later one mostly table indexes.
    fn typical_requests() -> (Vec<u8>, Vec<u8>) {
        let fields: [(&[u8], &[u8]); 6] = [
            (b":authority", b"kes.example.net:7373"),
            (b":path", b"/v1/key/generate/minio-default-key"),
            (
                b"user-agent",
                b"MinIO (linux; amd64) madmin-go/3.0.70 minio-go/v7.0.70",
            ),
            (b"content-type", b"application/json"),
            (b"content-length", b"44"),
            (b"accept-encoding", b"gzip"),
        ];
        let mut first = vec![0x83, 0x87]; // :method POST, :scheme https
        for (n, v) in fields {
            indexed_literal(n, v, &mut first);
        }
        // Newest first: accept-encoding 62, content-length 63, ..., :authority 67.
        let mut later = vec![0x83, 0x87, 0xc3, 0xc2, 0xc1, 0xc0];
        indexed_literal(b"content-length", b"132", &mut later);
        later.push(0xbf); // accept-encoding, one further down now
        (first, later)
    }

    #[test]
    fn typical_requests_decode() {
        let (first, later) = typical_requests();
        let mut d = Decoder::new(4096);
        let a = decode_ok(&mut d, &first);
        let b = decode_ok(&mut d, &later);
        assert_eq!(a.len(), 8);
        assert_eq!(a[..4], b[..4]);
        assert_eq!(b[6], (b"content-length".to_vec(), b"132".to_vec()));
        assert_eq!(b[7], (b"accept-encoding".to_vec(), b"gzip".to_vec()));
    }
}
