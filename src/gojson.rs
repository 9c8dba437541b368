//! Writing strings and times byte-for-byte as the Go server's standard library wrote them: JSON
//! strings as `encoding/json` escapes them (error bodies of §3, the audit log of §8.1, the error
//! log of §8.2) and times as `time.RFC3339Nano` (§2.3, §8.1) and `log/slog` (§8.2) print them.
//!
//! A leaf: this module uses nothing else of the crate, so that the API, the logger and the CLI can
//! all share it without depending on one another. Its reading counterpart, for legacy stored keys
//! and ciphertexts, is `crypto::gojson`.

use time::{OffsetDateTime, UtcOffset};

/// Writes `s` as a JSON string escaped the way Go's `encoding/json` does by default: `"` and `\`
/// backslashed; `\n`, `\r`, `\t`, `\b`, `\f` short (as Go 1.22 and later); other control characters, the HTML characters `<`, `>`,
/// `&`, and U+2028, U+2029 as `\u00XX` / `\u20XX` (lowercase hex).
///
/// Runs that need no escaping (almost all of a path, an identity or a message) are copied whole,
/// which is what makes this cheap enough for every audit event.
pub fn write_string(s: &str, out: &mut Vec<u8>) {
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut run = 0; // start of the bytes not yet copied
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            // Go 1.22 and later (the Go server's releases are built with them).
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            0x00..=0x1f | b'<' | b'>' | b'&' => Some(b""),
            // U+2028 and U+2029 are E2 80 A8 and E2 80 A9 in UTF-8.
            0xE2 if matches!(bytes.get(i + 1..i + 3), Some([0x80, 0xA8 | 0xA9])) => Some(b""),
            _ => None,
        };
        let Some(escape) = escape else {
            i += 1;
            continue;
        };
        out.extend_from_slice(bytes.get(run..i).unwrap_or_default());
        if escape.is_empty() {
            // `\u` + four hex digits of the code point.
            let (code, len) = if b == 0xE2 {
                (
                    0x2000 | u16::from(bytes.get(i + 2).copied().unwrap_or(0) - 0x80),
                    3,
                )
            } else {
                (u16::from(b), 1)
            };
            out.extend_from_slice(b"\\u");
            for shift in [12, 8, 4, 0] {
                out.push(HEX[usize::from((code >> shift) & 0xf)]);
            }
            i += len;
        } else {
            out.extend_from_slice(escape);
            i += 1;
        }
        run = i;
    }
    out.extend_from_slice(bytes.get(run..).unwrap_or_default());
    out.push(b'"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// `2024-01-12T10:39:20` (with `sep` between date and time) in the time's own offset: the part
/// that Go's time layouts, the `kes` command's tables and the logs share.
pub fn date_time(t: OffsetDateTime, sep: char) -> String {
    format!(
        "{:04}-{:02}-{:02}{sep}{:02}:{:02}:{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// Go's `time.RFC3339Nano` in UTC: the fraction with its trailing zeros removed (none when the
/// time is a whole second); Go's zero time for `None` (a value it never set).
pub fn go_time(t: Option<OffsetDateTime>) -> String {
    let Some(t) = t else {
        return "0001-01-01T00:00:00Z".to_string();
    };
    let t = t.to_offset(UtcOffset::UTC);
    let mut s = date_time(t, 'T');
    let nanos = t.nanosecond();
    if nanos != 0 {
        let frac = format!("{nanos:09}");
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// A time as Go's `log/slog` writes it: RFC 3339 in UTC with milliseconds, always three digits.
pub fn slog_time(t: OffsetDateTime) -> String {
    let t = t.to_offset(UtcOffset::UTC);
    format!("{}.{:03}Z", date_time(t, 'T'), t.millisecond())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quoted(s: &str) -> String {
        let mut out = Vec::new();
        write_string(s, &mut out);
        String::from_utf8(out).unwrap()
    }

    /// The plain per-character escaper the fast one replaced (Go's rules, written out).
    fn reference(s: &str) -> String {
        let mut out = String::from("\"");
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{8}' => out.push_str("\\b"),
                '\u{c}' => out.push_str("\\f"),
                '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                    out.push_str(&format!("\\u{:04x}", c as u32))
                }
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('"');
        out
    }

    #[test]
    fn escapes_as_go_encoding_json() {
        // Go's rules as of Go 1.22 (the Go server's builds): `\b` and `\f` for U+0008 and
        // U+000C (Go 1.21 and earlier wrote `\u0008` and `\u000c`; every JSON reader decodes
        // both the same).
        for (input, go) in [
            ("key does not exist", r#""key does not exist""#),
            ("", r#""""#),
            ("a<b>&\"c\"\n", r#""a\u003cb\u003e\u0026\"c\"\n""#),
            ("\u{0}\u{1f}\u{7f}", "\"\\u0000\\u001f\u{7f}\""),
            ("\u{8}\u{c}\u{b}", r#""\b\f\u000b""#),
            ("tab\there\r", r#""tab\there\r""#),
            ("a\u{2028}b\u{2029}", r#""a\u2028b\u2029""#),
            ("\u{2027}\u{202a}\u{2030}€", "\"\u{2027}\u{202a}\u{2030}€\""),
            ("/v1/key/create/my-key", r#""/v1/key/create/my-key""#),
            ("\\", r#""\\""#),
        ] {
            assert_eq!(quoted(input), go, "{input:?}");
        }
    }

    #[test]
    fn equals_the_per_character_escaper() {
        let mut samples: Vec<String> = [
            "/v1/key/create/my-key",
            "a\"b",
            "a\\b",
            "<&>",
            "line\nbreak\u{1}",
            "caf\u{e9} \u{2028} \u{2029} \u{2030}",
            "\u{7f}",
            "\u{e2}\u{80}\u{a8}", // the code points, not the bytes of U+2028
            "ends with \u{2029}",
            "\u{2028}",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        // Every code point below U+0800 and the U+2000 block, alone and between letters.
        for c in (0u32..0x800)
            .chain(0x2000..0x2100)
            .filter_map(char::from_u32)
        {
            samples.push(c.to_string());
            samples.push(format!("a{c}b{c}"));
        }
        for s in &samples {
            assert_eq!(quoted(s), reference(s), "{s:?}");
        }
    }

    #[test]
    fn go_time_format() {
        assert_eq!(go_time(None), "0001-01-01T00:00:00Z");
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_705_055_960_886_816_000).unwrap();
        assert_eq!(go_time(Some(t)), "2024-01-12T10:39:20.886816Z");
        let t = OffsetDateTime::from_unix_timestamp(1_705_055_960).unwrap();
        assert_eq!(go_time(Some(t)), "2024-01-12T10:39:20Z");
        let t = t.to_offset(UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(go_time(Some(t)), "2024-01-12T10:39:20Z");
    }

    #[test]
    fn slog_time_format() {
        let t = OffsetDateTime::from_unix_timestamp_nanos(1_765_038_118_846_123_456).unwrap();
        assert_eq!(slog_time(t), "2025-12-06T16:21:58.846Z");
        let t = OffsetDateTime::from_unix_timestamp(1_765_038_118).unwrap();
        assert_eq!(slog_time(t), "2025-12-06T16:21:58.000Z");
    }
}
