//! The HPACK decoder (`server::h2::hpack::Decoder`) over a sequence of header blocks on one
//! connection, and the encoder and Huffman code through it.
//!
//! Input: `config ‖ (length ‖ block)*`. The low three bits of `config` pick the
//! SETTINGS_HEADER_TABLE_SIZE, the next three the header list size limit; each block is the
//! `length` octets after its length octet (the last one may be shorter). The blocks go one after
//! another through one decoder, as the header blocks of one connection do, until the first error
//! (a COMPRESSION_ERROR closes the connection).
//!
//! Checks: never panics, never runs long (libFuzzer's timeout: a block of one-octet references
//! to a large entry must cost time per octet, not per octet of output); a second decoder with no
//! list limit decodes the same blocks with the same outcome, and the limited one emits exactly
//! the longest prefix of its fields within the limit, returns TooLarge exactly when the list is
//! over it, and ends each block with the same dynamic table (so the limit never desynchronises
//! the table from the client's encoder); the table stays within its capacity, and the capacity
//! within the advertised size; every field list re-encoded with `encode_field` decodes, on a
//! fresh decoder, to the same fields and leaves its table empty; Huffman coding round-trips the
//! block octets, and decodings of them.
#![no_main]

use kes::server::h2::hpack::huffman;
use kes::server::h2::hpack::{DecodeError, Decoded, Decoder, encode_field};
use libfuzzer_sys::fuzz_target;

/// Table sizes: none, smaller than one entry, a few entries, the RFC's C.5 size, the default.
const TABLE_SIZES: [usize; 8] = [0, 1, 33, 64, 100, 256, 1024, 4096];
/// Header list limits, from nothing to none.
const LIST_LIMITS: [usize; 8] = [0, 1, 33, 64, 100, 300, 16 * 1024, usize::MAX];

type Fields = Vec<(Vec<u8>, Vec<u8>)>;

fn field_size(name: &[u8], value: &[u8]) -> usize {
    name.len() + value.len() + 32
}

fn decode(d: &mut Decoder, block: &[u8], limit: usize) -> (Result<Decoded, DecodeError>, Fields) {
    let mut fields = Vec::new();
    let result = d.decode(block, limit, |n, v| fields.push((n.to_vec(), v.to_vec())));
    (result, fields)
}

fn table(d: &Decoder) -> Fields {
    d.table_entries()
        .map(|(n, v)| (n.to_vec(), v.to_vec()))
        .collect()
}

fn check_table(d: &Decoder, max_table_size: usize) {
    let sum: usize = d.table_entries().map(|(n, v)| field_size(n, v)).sum();
    assert_eq!(sum, d.table_size());
    assert!(d.table_size() <= d.table_capacity());
    assert!(d.table_capacity() <= max_table_size);
}

/// The fields re-encoded without indexing decode, on a fresh decoder, to themselves.
fn check_reencoding(fields: &Fields) {
    let mut block = Vec::new();
    for (name, value) in fields {
        encode_field(name, value, &mut block);
    }
    let mut fresh = Decoder::new(4096);
    let (result, again) = decode(&mut fresh, &block, usize::MAX);
    assert_eq!(result, Ok(Decoded::Complete));
    assert_eq!(&again, fields);
    assert_eq!(fresh.table_size(), 0);
}

fn check_huffman(octets: &[u8]) {
    let mut coded = Vec::new();
    huffman::encode(octets, &mut coded);
    assert_eq!(coded.len(), huffman::encoded_len(octets));
    let mut plain = Vec::new();
    assert_eq!(huffman::decode(&coded, &mut plain), Ok(()));
    assert_eq!(plain, octets);

    let mut decoded = Vec::new();
    if huffman::decode(octets, &mut decoded).is_ok() {
        assert!(decoded.len() <= octets.len() * 8 / 5);
        let mut coded = Vec::new();
        huffman::encode(&decoded, &mut coded);
        // The code is a bijection up to padding: re-coding gives the input back.
        assert_eq!(coded, octets);
    }
}

fuzz_target!(|data: &[u8]| {
    let [config, rest @ ..] = data else {
        return;
    };
    let mut rest = rest;
    let max_table_size = TABLE_SIZES[usize::from(config & 7)];
    let limit = LIST_LIMITS[usize::from((config >> 3) & 7)];
    let mut limited = Decoder::new(max_table_size);
    let mut unlimited = Decoder::new(max_table_size);
    while let [len, after @ ..] = rest {
        let (block, next) = after.split_at(usize::from(*len).min(after.len()));
        rest = next;
        check_huffman(block);

        let (result, fields) = decode(&mut limited, block, limit);
        let (full_result, all_fields) = decode(&mut unlimited, block, usize::MAX);
        let Ok(full) = full_result else {
            assert_eq!(result, full_result, "the limit changed the error");
            return;
        };
        assert_eq!(full, Decoded::Complete);
        // The longest prefix of the fields within the limit.
        let mut size = 0usize;
        let within = all_fields
            .iter()
            .take_while(|(n, v)| {
                size = size.saturating_add(field_size(n, v));
                size <= limit
            })
            .count();
        assert_eq!(fields[..], all_fields[..within]);
        let expected = if within == all_fields.len() {
            Decoded::Complete
        } else {
            Decoded::TooLarge
        };
        assert_eq!(result, Ok(expected));
        let emitted: usize = fields.iter().map(|(n, v)| field_size(n, v)).sum();
        assert!(emitted <= limit);

        assert_eq!(table(&limited), table(&unlimited));
        assert_eq!(limited.table_capacity(), unlimited.table_capacity());
        check_table(&unlimited, max_table_size);
        check_reencoding(&all_fields);
    }
});
