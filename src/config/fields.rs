//! A walk over the YAML document, before it is decoded, that finds:
//!
//! * fields a section does not know ([`Unknown`]): a typo, a field of a newer or older Go
//!   release, or one put in the wrong section. The Go server ignores them silently; this server
//!   ignores them too, so that a file that works with the Go server starts here, but says so,
//!   with the line and the closest known field. `kes server --check` reports them as errors.
//! * a key written twice in one mapping: an error, as with the Go server's YAML decoder (which
//!   names both lines), whatever the section.
//!
//! The decoder gives no position to a key it reads, only to an error. So the walk stops, with an
//! error, at the first finding after the ones already made, and is run again from the start for
//! the next (config files are small: a walk takes microseconds). Keys are counted in document
//! order, which identifies each one across walks; a second kind of walk stops at a given key to
//! learn its line (the first occurrence of a duplicated key).

use super::schema::{self, Step};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use std::fmt;

/// The most unknown fields reported for one file; more are summarised in one last entry.
const MAX_REPORTED: usize = 50;

/// A field that no section of the schema has at that place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Unknown {
    pub line: usize,
    /// The YAML path of the section, e.g. `keystore.vault`; empty at the top level.
    pub section: String,
    pub field: String,
    /// The known field it most likely means.
    pub suggestion: Option<&'static str>,
    /// Every field the section knows.
    pub known: &'static [&'static str],
}

impl Unknown {
    /// `unknown field 'identiti' in 'admin': did you mean 'identity'?`
    pub fn message(&self) -> String {
        let mut msg = format!("unknown field '{}'", self.field);
        if !self.section.is_empty() {
            msg.push_str(&format!(" in '{}'", self.section));
        }
        match self.suggestion {
            Some(s) => msg.push_str(&format!(": did you mean '{s}'?")),
            None => msg.push_str(&format!(" (known fields: {})", self.known.join(", "))),
        }
        msg
    }
}

/// A key written twice in one mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Duplicate {
    pub line: usize,
    pub first_line: Option<usize>,
    pub section: String,
    pub key: String,
}

impl Duplicate {
    pub fn message(&self) -> String {
        let mut msg = format!("'{}' is defined twice", self.key);
        if !self.section.is_empty() {
            msg.push_str(&format!(" in '{}'", self.section));
        }
        if let Some(first) = self.first_line {
            msg.push_str(&format!(" (first at line {first})"));
        }
        msg
    }
}

/// Walks `text` (a YAML document) and returns its unknown fields in document order, or the
/// first key defined twice. A document the walk cannot read (a syntax error, a key that is no
/// scalar) yields no findings: the decoder then reports what is wrong with it.
pub(crate) fn check(text: &str) -> Result<Vec<Unknown>, Duplicate> {
    let mut unknown = Vec::new();
    let mut after = 0;
    loop {
        let (stop, line) = match walk(text, Mode::After(after)) {
            Some(found) => found,
            None => return Ok(unknown),
        };
        match stop {
            Stop::Unknown {
                ordinal,
                section,
                field,
                known,
            } => {
                if unknown.len() == MAX_REPORTED {
                    return Ok(unknown);
                }
                let suggestion = suggest(&field, known);
                unknown.push(Unknown {
                    line,
                    section,
                    field,
                    suggestion,
                    known,
                });
                after = ordinal;
            }
            Stop::Duplicate {
                section,
                key,
                first,
                ..
            } => {
                let first_line = match walk(text, Mode::At(first)) {
                    Some((Stop::At, line)) => Some(line),
                    _ => None,
                };
                return Err(Duplicate {
                    line,
                    first_line,
                    section,
                    key,
                });
            }
            Stop::At => return Ok(unknown),
        }
    }
}

/// The known field that `field` most likely means: the same name up to case and `-`/`_`, or
/// the one at the smallest edit distance (transpositions count one), if small for the length.
pub(crate) fn suggest(field: &str, known: &[&'static str]) -> Option<&'static str> {
    let norm = |s: &str| s.to_ascii_lowercase().replace('-', "_");
    let wanted = norm(field);
    if let Some(k) = known.iter().find(|k| norm(k) == wanted) {
        return Some(k);
    }
    let (best, distance) = known
        .iter()
        .map(|k| (*k, edit_distance(&wanted, k)))
        .min_by_key(|(_, d)| *d)?;
    let len = wanted.chars().count().min(best.chars().count());
    let allowed = match len {
        0..=3 => 1,
        4..=8 => 2,
        _ => 3,
    };
    (distance <= allowed).then_some(best)
}

/// Optimal-string-alignment distance: insertions, deletions, substitutions and transpositions of
/// two neighbours each count one.
fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

// ---------------------------------------------------------------------------------------------
// The walk
// ---------------------------------------------------------------------------------------------

/// What a walk looks for.
#[derive(Clone, Copy)]
enum Mode {
    /// The first finding at a key after the `n`th.
    After(usize),
    /// The `n`th key.
    At(usize),
}

/// Why a walk stopped.
enum Stop {
    Unknown {
        ordinal: usize,
        section: String,
        field: String,
        known: &'static [&'static str],
    },
    Duplicate {
        section: String,
        key: String,
        /// The ordinal of the first occurrence.
        first: usize,
    },
    At,
}

/// The message of the error that stops a walk; it never reaches the user.
const STOPPED: &str = "\u{2}walk stopped";

struct State {
    mode: Mode,
    /// Keys seen so far, in document order.
    ordinal: usize,
    stop: Option<Stop>,
}

/// Runs one walk; `Some((why, line))` when it stopped at a key.
fn walk(text: &str, mode: Mode) -> Option<(Stop, usize)> {
    let mut state = State {
        mode,
        ordinal: 0,
        stop: None,
    };
    let result = Node {
        state: &mut state,
        path: &[],
    }
    .deserialize(yaml_serde::Deserializer::from_str(text));
    let err = result.err()?;
    let stop = state.stop?;
    if !err.to_string().contains(STOPPED) {
        return None;
    }
    let line = err.location()?.line();
    Some((stop, line))
}

fn section_name(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Some(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            None => out.push_str("[]"),
        }
    }
    out
}

/// Any node of the document at `path`.
struct Node<'s, 'p> {
    state: &'s mut State,
    path: &'p [Step<'p>],
}

impl<'de> DeserializeSeed<'de> for Node<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Node<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.deserialize(d)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        // A tagged node (`!tag value`): nothing of the schema is inside one.
        IgnoredAny.visit_enum(data).map(|_| ())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let mut path = self.path.to_vec();
        path.push(None);
        while seq
            .next_element_seed(Node {
                state: &mut *self.state,
                path: &path,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let known = schema::known_fields(self.path);
        // Keys of this mapping with their ordinals.
        let mut seen: Vec<(String, usize)> = Vec::new();
        loop {
            let key = map.next_key_seed(Key {
                state: &mut *self.state,
                path: self.path,
                known,
                seen: &seen,
            })?;
            let Some((key, ordinal)) = key else {
                return Ok(());
            };
            let mut path = self.path.to_vec();
            path.push(Some(&key));
            map.next_value_seed(Node {
                state: &mut *self.state,
                path: &path,
            })?;
            seen.push((key, ordinal));
        }
    }
}

/// A mapping key: counted, and checked against the section's fields and the keys before it.
struct Key<'s, 'p, 'k> {
    state: &'s mut State,
    path: &'p [Step<'p>],
    known: Option<&'static [&'static str]>,
    seen: &'k [(String, usize)],
}

impl<'de> DeserializeSeed<'de> for Key<'_, '_, '_> {
    type Value = (String, usize);

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl Key<'_, '_, '_> {
    fn check<E: de::Error>(self, key: String) -> Result<(String, usize), E> {
        self.state.ordinal += 1;
        let ordinal = self.state.ordinal;
        let stop = match self.state.mode {
            Mode::At(n) if n == ordinal => Some(Stop::At),
            Mode::At(_) => None,
            Mode::After(n) if ordinal <= n => None,
            Mode::After(_) => {
                if let Some((_, first)) = self.seen.iter().find(|(k, _)| *k == key) {
                    Some(Stop::Duplicate {
                        section: section_name(self.path),
                        key: key.clone(),
                        first: *first,
                    })
                } else {
                    match self.known {
                        Some(known) if !known.contains(&key.as_str()) => Some(Stop::Unknown {
                            ordinal,
                            section: section_name(self.path),
                            field: key.clone(),
                            known,
                        }),
                        _ => None,
                    }
                }
            }
        };
        match stop {
            Some(stop) => {
                self.state.stop = Some(stop);
                Err(E::custom(STOPPED))
            }
            None => Ok((key, ordinal)),
        }
    }
}

impl<'de> Visitor<'de> for Key<'_, '_, '_> {
    type Value = (String, usize);

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a mapping key")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.check(v.to_owned())
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.check(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.check(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.check(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.check(v.to_string())
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        self.check(String::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions() {
        let top = schema::known_fields(&[]).unwrap();
        assert_eq!(suggest("adress", top), Some("address"));
        assert_eq!(suggest("Address", top), Some("address"));
        assert_eq!(suggest("kestore", top), Some("keystore"));
        assert_eq!(suggest("polices", top), Some("policy"));
        assert_eq!(suggest("zzzzzz", top), None);
        let tls = schema::known_fields(&[Some("tls")]).unwrap();
        assert_eq!(suggest("kye", tls), Some("key"));
        assert_eq!(suggest("certificate", tls), None);
        let api = schema::known_fields(&[Some("api"), Some("/v1/ready")]).unwrap();
        assert_eq!(suggest("skip-auth", api), Some("skip_auth"));
        assert_eq!(suggest("skipauth", api), Some("skip_auth"));
    }

    #[test]
    fn the_derived_field_lists_are_the_decoders() {
        assert_eq!(
            schema::known_fields(&[Some("tls")]).unwrap(),
            ["key", "cert", "password", "auth", "ca", "proxy"]
        );
        assert_eq!(
            schema::known_fields(&[Some("keys"), Some("vault"), Some("approle")]).unwrap(),
            ["namespace", "engine", "id", "secret", "retry"]
        );
        assert_eq!(schema::known_fields(&[Some("policy")]), None);
        assert_eq!(schema::known_fields(&[Some("keystore")]), None);
        assert_eq!(schema::known_fields(&[Some("keystore"), Some("aws")]), None);
    }

    #[test]
    fn finds_unknown_fields_with_their_lines() {
        let text = "version: v1\nadress: x\nadmin:\n  identiti: y\n  identity: z\n\
                    policy:\n  p:\n    alow: []\n    identities: []\n\
                    keys:\n  - name: k\n    size: 3\nkeystore:\n  vault:\n    approle:\n      role: r\n";
        let found = check(text).unwrap();
        let brief: Vec<(usize, &str, &str, Option<&str>)> = found
            .iter()
            .map(|u| (u.line, u.section.as_str(), u.field.as_str(), u.suggestion))
            .collect();
        assert_eq!(
            brief,
            [
                (2, "", "adress", Some("address")),
                (4, "admin", "identiti", Some("identity")),
                (8, "policy.p", "alow", Some("allow")),
                (12, "keys[]", "size", None),
                (16, "keystore.vault.approle", "role", None),
            ]
        );
        assert_eq!(
            found[0].message(),
            "unknown field 'adress': did you mean 'address'?"
        );
        assert_eq!(
            found[3].message(),
            "unknown field 'size' in 'keys[]' (known fields: name)"
        );
    }

    #[test]
    fn flow_mappings_and_comments() {
        let text = "# comment\nadmin: {identity: x, idenity: y}  # c\ntls: {key: a, cert: b}\n";
        let found = check(text).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!((found[0].line, found[0].field.as_str()), (2, "idenity"));
    }

    #[test]
    fn duplicate_keys_name_both_lines() {
        let text = "admin:\n  identity: a\ntls:\n  key: k\n  cert: c\n  cert: d\n";
        let dup = check(text).unwrap_err();
        assert_eq!(dup.line, 6);
        assert_eq!(dup.first_line, Some(5));
        assert_eq!(
            dup.message(),
            "'cert' is defined twice in 'tls' (first at line 5)"
        );
        let text = "admin:\n  identity: a\n\nadmin:\n  identity: b\n";
        let dup = check(text).unwrap_err();
        assert_eq!((dup.line, dup.first_line), (4, Some(1)));
        assert_eq!(dup.message(), "'admin' is defined twice (first at line 1)");
        // Anywhere, also in sections whose keys are names.
        let text = "policy:\n  p: {}\n  q: {}\n  p: {}\n";
        let dup = check(text).unwrap_err();
        assert_eq!((dup.line, dup.first_line), (4, Some(2)));
    }

    #[test]
    fn documents_it_cannot_read_are_left_to_the_decoder() {
        assert_eq!(check("admin: [\n"), Ok(Vec::new()));
        assert_eq!(check(""), Ok(Vec::new()));
        assert_eq!(check("- 1\n- 2\n"), Ok(Vec::new()));
        assert_eq!(check("? [a, b]\n: 1\n"), Ok(Vec::new()));
    }

    #[test]
    fn caps_the_number_reported() {
        let text: String = (0..80).map(|i| format!("bogus{i}: 1\n")).collect();
        assert_eq!(check(&text).unwrap().len(), MAX_REPORTED);
    }
}
