//! A minimal DER reader for X.509 certificates: the SubjectPublicKeyInfo that identities are
//! made of (§1.1), whether a certificate is a CA, and a check that a decrypted private key looks
//! like DER. A leaf: it uses nothing else of the crate, so that `auth` (identities) and `certs`
//! (loading and making certificates) can both use it without depending on each other.

use std::fmt;

/// A certificate whose DER cannot be walked to its public key: `invalid certificate: <why>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidCertificate(pub DerError);

impl fmt::Display for InvalidCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid certificate: {}", self.0)
    }
}

impl std::error::Error for InvalidCertificate {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

/// The DER SubjectPublicKeyInfo inside a DER X.509 certificate (any version, v1 included),
/// including its tag and length.
pub fn spki_of_certificate(der: &[u8]) -> Result<&[u8], InvalidCertificate> {
    parse_certificate(der)
        .map(|c| c.spki)
        .map_err(InvalidCertificate)
}

/// True when the certificate's basicConstraints extension says CA=true. False for certificates
/// without the extension (e.g. X.509 v1) and for certificates that cannot be parsed.
pub fn is_ca_certificate(der: &[u8]) -> bool {
    parse_certificate(der)
        .and_then(|c| c.basic_constraints_ca())
        .unwrap_or(false)
}

/// True when `der` is exactly one well-formed DER SEQUENCE header whose length covers the rest.
/// Used to tell a decrypted private key from the garbage a wrong password produces.
pub fn is_single_der_sequence(der: &[u8]) -> bool {
    let mut r = Reader::new(der);
    r.expect(TAG_SEQUENCE, "").is_ok() && r.finish("").is_ok()
}

// ---- A minimal DER reader -------------------------------------------------------------------

const TAG_BOOLEAN: u8 = 0x01;
const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;
/// `[0] EXPLICIT Version` of tbsCertificate.
const TAG_VERSION: u8 = 0xa0;
/// `[1] IMPLICIT UniqueIdentifier` (issuerUniqueID).
const TAG_ISSUER_UID: u8 = 0x81;
/// `[2] IMPLICIT UniqueIdentifier` (subjectUniqueID).
const TAG_SUBJECT_UID: u8 = 0x82;
/// `[3] EXPLICIT Extensions`.
const TAG_EXTENSIONS: u8 = 0xa3;
/// DER contents of the OID 2.5.29.19 (id-ce-basicConstraints).
const OID_BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];

/// What is wrong with some DER. Static texts only: they never echo input bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DerError(&'static str);

impl fmt::Display for DerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DerError {}

/// One DER element.
#[derive(Debug, Clone, Copy)]
struct Element<'a> {
    /// The contents octets.
    contents: &'a [u8],
    /// The whole encoding: tag, length and contents.
    encoded: &'a [u8],
}

/// Reads consecutive DER elements from a slice.
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(input: &'a [u8]) -> Self {
        Reader { rest: input }
    }

    fn peek_tag(&self) -> Option<u8> {
        self.rest.first().copied()
    }

    fn read(&mut self) -> Result<Element<'a>, DerError> {
        let input = self.rest;
        let (&tag, after_tag) = input.split_first().ok_or(DerError("truncated element"))?;
        if tag & 0x1f == 0x1f {
            return Err(DerError("multi-byte tags are not supported"));
        }
        let (&first, after_len) = after_tag
            .split_first()
            .ok_or(DerError("truncated length"))?;
        let (len, len_octets) = match first {
            0x00..=0x7f => (usize::from(first), 0usize),
            0x80 => return Err(DerError("indefinite length is not allowed in DER")),
            0x81..=0x84 => {
                let n = usize::from(first & 0x7f);
                let octets = after_len.get(..n).ok_or(DerError("truncated length"))?;
                if octets.first() == Some(&0) {
                    return Err(DerError("non-minimal length encoding"));
                }
                let len = octets
                    .iter()
                    .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
                if len < 0x80 {
                    return Err(DerError("non-minimal length encoding"));
                }
                (len, n)
            }
            _ => return Err(DerError("length too large")),
        };
        let header = 2 + len_octets;
        let total = header
            .checked_add(len)
            .ok_or(DerError("length too large"))?;
        let encoded = input
            .get(..total)
            .ok_or(DerError("element longer than its container"))?;
        let contents = encoded.get(header..).ok_or(DerError("truncated element"))?;
        self.rest = input.get(total..).unwrap_or_default();
        Ok(Element { contents, encoded })
    }

    /// Reads an element that must have `tag`.
    fn expect(&mut self, tag: u8, what: &'static str) -> Result<Element<'a>, DerError> {
        match self.peek_tag() {
            Some(t) if t == tag => self.read(),
            _ => Err(DerError(what)),
        }
    }

    /// Reads an element if the next one has `tag`.
    fn optional(&mut self, tag: u8) -> Result<Option<Element<'a>>, DerError> {
        if self.peek_tag() == Some(tag) {
            self.read().map(Some)
        } else {
            Ok(None)
        }
    }

    /// Requires that nothing is left.
    fn finish(&self, what: &'static str) -> Result<(), DerError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(DerError(what))
        }
    }
}

/// The parts of a certificate we need.
pub(crate) struct ParsedCertificate<'a> {
    pub(crate) spki: &'a [u8],
    /// Contents of the `[3]` element, if present.
    extensions: Option<&'a [u8]>,
}

/// Walks `Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }`.
pub(crate) fn parse_certificate(der: &[u8]) -> Result<ParsedCertificate<'_>, DerError> {
    let mut outer = Reader::new(der);
    let cert = outer.expect(TAG_SEQUENCE, "not a DER certificate (expected a SEQUENCE)")?;
    outer.finish("trailing data after the certificate")?;

    let mut c = Reader::new(cert.contents);
    let tbs = c.expect(TAG_SEQUENCE, "missing tbsCertificate")?;
    c.expect(TAG_SEQUENCE, "missing signatureAlgorithm")?;
    c.expect(TAG_BIT_STRING, "missing signatureValue")?;
    c.finish("trailing data inside the certificate")?;

    let mut t = Reader::new(tbs.contents);
    if let Some(version) = t.optional(TAG_VERSION)? {
        let mut v = Reader::new(version.contents);
        v.expect(TAG_INTEGER, "malformed version")?;
        v.finish("malformed version")?;
    }
    t.expect(TAG_INTEGER, "missing serialNumber")?;
    t.expect(TAG_SEQUENCE, "missing signature algorithm")?;
    t.expect(TAG_SEQUENCE, "missing issuer")?;
    t.expect(TAG_SEQUENCE, "missing validity")?;
    t.expect(TAG_SEQUENCE, "missing subject")?;
    let spki = t.expect(TAG_SEQUENCE, "missing subjectPublicKeyInfo")?;
    t.optional(TAG_ISSUER_UID)?;
    t.optional(TAG_SUBJECT_UID)?;
    let extensions = t.optional(TAG_EXTENSIONS)?.map(|e| e.contents);
    t.finish("trailing data inside tbsCertificate")?;

    // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }
    let mut s = Reader::new(spki.contents);
    s.expect(TAG_SEQUENCE, "malformed subjectPublicKeyInfo")?;
    s.expect(TAG_BIT_STRING, "malformed subjectPublicKeyInfo")?;
    s.finish("malformed subjectPublicKeyInfo")?;

    Ok(ParsedCertificate {
        spki: spki.encoded,
        extensions,
    })
}

impl ParsedCertificate<'_> {
    /// The cA flag of the basicConstraints extension (false when absent). A certificate with the
    /// extension twice is malformed (RFC 5280 §4.2; Go rejects it too).
    pub(crate) fn basic_constraints_ca(&self) -> Result<bool, DerError> {
        let Some(extensions) = self.extensions else {
            return Ok(false);
        };
        // [3] EXPLICIT Extensions ::= SEQUENCE SIZE (1..MAX) OF Extension
        let mut wrapper = Reader::new(extensions);
        let list = wrapper.expect(TAG_SEQUENCE, "malformed extensions")?;
        wrapper.finish("malformed extensions")?;

        let mut found = None;
        let mut exts = Reader::new(list.contents);
        while exts.peek_tag().is_some() {
            // Extension ::= SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET STRING }
            let ext = exts.expect(TAG_SEQUENCE, "malformed extension")?;
            let mut e = Reader::new(ext.contents);
            let oid = e.expect(TAG_OID, "malformed extension")?;
            if let Some(critical) = e.optional(TAG_BOOLEAN)? {
                parse_boolean(critical)?;
            }
            let value = e.expect(TAG_OCTET_STRING, "malformed extension")?;
            e.finish("malformed extension")?;
            if oid.contents == OID_BASIC_CONSTRAINTS {
                if found.is_some() {
                    return Err(DerError("duplicate basicConstraints extension"));
                }
                found = Some(parse_basic_constraints(value.contents)?);
            }
        }
        Ok(found.unwrap_or(false))
    }
}

/// `BasicConstraints ::= SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }`
fn parse_basic_constraints(value: &[u8]) -> Result<bool, DerError> {
    let mut outer = Reader::new(value);
    let seq = outer.expect(TAG_SEQUENCE, "malformed basicConstraints")?;
    outer.finish("malformed basicConstraints")?;
    let mut r = Reader::new(seq.contents);
    let ca = match r.optional(TAG_BOOLEAN)? {
        Some(b) => parse_boolean(b)?,
        None => false,
    };
    r.optional(TAG_INTEGER)?;
    r.finish("malformed basicConstraints")?;
    Ok(ca)
}

/// A DER BOOLEAN is one octet, 0x00 or 0xff.
fn parse_boolean(e: Element<'_>) -> Result<bool, DerError> {
    match e.contents {
        [0x00] => Ok(false),
        [0xff] => Ok(true),
        _ => Err(DerError("malformed BOOLEAN")),
    }
}
