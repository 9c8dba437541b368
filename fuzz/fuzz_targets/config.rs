//! The config loader (§7) on arbitrary text: `${NAME}` substitution, YAML decoding of both schema
//! generations, durations, defaults and validation.
//!
//! The environment is fixed (see `lookup`): a few variables whose values are hard to carry through
//! YAML (quotes, `#`, `:`, newlines, a `${…}` of their own), each containing the marker `S3CRET`.
//!
//! Run it without network (`unshare --net`, as scripts/fuzz.sh does): `address:` may name a host,
//! which the loader resolves. With the network reachable, inputs that could do that are skipped.
//!
//! Checks: never panics; never hangs (libFuzzer's `-timeout` catches that); an error message never
//! shows the value of an environment variable (unless the file itself contains the marker, in
//! which case the message may legitimately quote the file).
#![no_main]

use kes::config;
use libfuzzer_sys::fuzz_target;
use std::env::VarError;
use std::net::UdpSocket;
use std::sync::OnceLock;

const MARKER: &str = "S3CRET";

fn lookup(name: &str) -> Result<String, VarError> {
    let value = match name {
        "A" => "S3CRET-plain",
        "B" => "S3CRET \"quoted\" 'single' # not a comment: x",
        "C" => "S3CRET\nsecond: line\n- item",
        "D" => "${A} S3CRET",
        "E" => "S3CRET\\u0000\t\r",
        "EMPTY" => "",
        "ID" => "3ecfcdf38fcbe141ae26a1030f81e96b753365a46760ae6b578698a97c59fd22",
        "DUR" => "1h30m",
        _ => return Err(VarError::NotPresent),
    };
    Ok(value.to_owned())
}

/// True when this process cannot reach the network (scripts/fuzz.sh runs this target under
/// `unshare --net`). A UDP `connect` sends nothing; it fails only when there is no route.
fn isolated() -> bool {
    static ISOLATED: OnceLock<bool> = OnceLock::new();
    *ISOLATED.get_or_init(|| {
        let isolated = UdpSocket::bind("0.0.0.0:0")
            .and_then(|s| s.connect("192.0.2.1:53"))
            .is_err();
        if !isolated {
            eprintln!(
                "config: the network is reachable, so inputs that could name an `address` to \
                 resolve are skipped; run under `unshare --net` (scripts/fuzz.sh does) to fuzz them"
            );
        }
        isolated
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // `address:` may be a host name, which the loader resolves: a fuzzer must not send random
    // names to the resolver. Escapes (`\x64`) and escaped line breaks could spell the key too.
    if !isolated() && (text.contains("addr") || text.contains('\\')) {
        return;
    }
    match config::parse_with(text, None, lookup) {
        Err(err) => {
            let message = err.to_string();
            if !text.contains(MARKER) {
                assert!(
                    !message.contains(MARKER),
                    "an error shows an environment variable's value: {message}"
                );
            }
        }
        Ok(cfg) => {
            // Formatting must not panic either; the redaction of secret fields in `Debug` is
            // checked by the config unit tests, where the values are known.
            let _ = format!("{cfg:?}");
        }
    }
});
