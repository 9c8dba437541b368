//! The DER walk that finds a client certificate's public key (`spki_of_certificate`), its CA flag
//! (`is_ca_certificate`) and a TLS peer's identity (`Identity::of_peer`).
//!
//! Input: one DER certificate; it is also presented as a peer's chain alone, twice, and behind a
//! copy of itself with one byte changed.
//!
//! Checks: never panics; the SPKI found is a SEQUENCE inside the input; whatever rustls-webpki
//! accepts as an end-entity certificate we accept too, and find the same SPKI, unless that SPKI is
//! malformed inside (webpki looks inside only when it checks a signature). webpki rejects X.509
//! v1, which we accept, so the converse is not checked; the identity of a lone certificate is the
//! SHA-256 of that SPKI unless it is a CA or its extensions are malformed; two copies of a leaf
//! are refused.
#![no_main]

use kes::auth::Identity;
use kes::auth::identity::{PeerIdentityError, is_ca_certificate, spki_of_certificate};
use libfuzzer_sys::fuzz_target;
use rustls_pki_types::CertificateDer;

fuzz_target!(|der: &[u8]| {
    let spki = spki_of_certificate(der);
    let is_ca = is_ca_certificate(der);
    if let Ok(spki) = spki {
        assert_eq!(spki.first(), Some(&0x30));
        let start = spki.as_ptr() as usize - der.as_ptr() as usize;
        assert!(start + spki.len() <= der.len(), "SPKI outside the input");
    } else {
        assert!(!is_ca, "an unparsable certificate is not a CA");
    }

    let cert = CertificateDer::from(der);
    if let Ok(ee) = webpki::EndEntityCert::try_from(&cert) {
        let theirs = ee.subject_public_key_info();
        match &spki {
            Ok(ours) => assert_eq!(*ours, theirs.as_ref(), "SPKI differs from webpki"),
            // webpki reads the SPKI's insides only when it checks a signature; we refuse an SPKI
            // that is not `SEQUENCE { SEQUENCE, BIT STRING }` at once (with the message of
            // whatever is wrong inside it).
            Err(e) => assert!(
                !spki_well_formed(theirs.as_ref()),
                "webpki parses it, we must too: {e}"
            ),
        }
    }

    // `is_ca_certificate` says false for malformed extensions too; `of_peer` refuses those.
    let alone = Identity::of_peer(std::slice::from_ref(&cert));
    let twice = Identity::of_peer(&[cert.clone(), cert.clone()]);
    let malformed =
        |r: &Result<Identity, PeerIdentityError>| matches!(r, Err(PeerIdentityError::Malformed(_)));
    match (&spki, is_ca) {
        (Ok(_), _) if malformed(&alone) => assert!(!is_ca && malformed(&twice)),
        (Ok(spki), false) => {
            assert_eq!(alone, Ok(Identity::of_spki(spki)));
            assert_eq!(twice, Err(PeerIdentityError::MoreThanOne));
        }
        (Ok(_), true) => {
            assert_eq!(alone, Err(PeerIdentityError::Missing));
            assert_eq!(twice, Err(PeerIdentityError::Missing));
        }
        (Err(_), _) => assert!(malformed(&alone) && malformed(&twice)),
    }
    if !der.is_empty() {
        let mut changed = der.to_vec();
        let i = der.len() / 2;
        changed[i] = changed[i].wrapping_add(1);
        let _ = Identity::of_peer(&[CertificateDer::from(changed), cert]);
    }
});

/// An independent check that `spki` is `SEQUENCE { SEQUENCE {…}, BIT STRING }` in DER, each
/// element exactly filling its container (lengths in short or minimal long form).
fn spki_well_formed(spki: &[u8]) -> bool {
    /// Splits one element off `input`: (tag, contents, rest).
    fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n || rest[0] == 0 {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |a, &b| a << 8 | usize::from(b));
            if len < 0x80 {
                return None;
            }
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }
    let Some((0x30, inner, [])) = element(spki) else {
        return false;
    };
    let Some((0x30, _, rest)) = element(inner) else {
        return false;
    };
    matches!(element(rest), Some((0x03, _, [])))
}
