//! Loading the server's private key and certificates from PEM text (`tls.key`, `tls.cert`,
//! `tls.ca`), including the legacy OpenSSL encryption that `tls.password` decrypts.
//!
//! Input: `password choice ‖ PEM text`. The password is none, empty, or `correct horse` (the
//! password of the encrypted seeds, so that the fuzzer starts from keys that decrypt).
//!
//! Checks: never panics (ring then reads whatever key was found); error messages never contain
//! the password or a line of base64 from the input (they may name the file, a cipher, a label);
//! every certificate found is one our DER walk accepts.
#![no_main]

use kes::certs;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

const PASSWORD: &str = "correct horse";

fuzz_target!(|data: &[u8]| {
    let Some((&choice, pem)) = data.split_first() else {
        return;
    };
    let password = match choice % 3 {
        0 => None,
        1 => Some(""),
        _ => Some(PASSWORD),
    };
    let path = Path::new("fuzz.pem");
    match certs::private_key_from_pem(pem, password, path) {
        Ok(key) => {
            // The PEM parser does not check the DER inside (it may even be empty); ring does, and
            // must not panic.
            let _ = certs::spki_of_private_key(&key);
        }
        Err(err) => {
            // The message, and every error under it.
            let mut message = err.to_string();
            let mut source = std::error::Error::source(&err);
            while let Some(e) = source {
                message.push_str(&format!("\n{e}"));
                source = e.source();
            }
            assert!(!message.contains(PASSWORD), "error shows the password");
            // No line of base64 from the input (a key body) may be echoed. Header and BEGIN/END
            // lines may be named (a cipher, a label), so text that also occurs in one is exempt.
            let lines: Vec<&[u8]> = pem.split(|&b| b == b'\n').map(<[u8]>::trim_ascii).collect();
            let named: Vec<&[u8]> = lines
                .iter()
                .copied()
                .filter(|l| l.contains(&b':') || l.starts_with(b"-----"))
                .collect();
            for line in lines {
                let base64_like = line.len() >= 24
                    && line
                        .iter()
                        .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b));
                if !base64_like
                    || named
                        .iter()
                        .any(|n| n.windows(line.len()).any(|w| w == line))
                {
                    continue;
                }
                let line = std::str::from_utf8(line).expect("ASCII");
                assert!(!message.contains(line), "error echoes key material");
            }
        }
    }
    if let Ok(certificates) = certs::parse_certificates(pem, path) {
        for cert in certificates {
            kes::auth::identity::spki_of_certificate(&cert).expect("checked by parse_certificates");
        }
    }
});
