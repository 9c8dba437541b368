//! `${VAR}` substitution on the text of the config file, before YAML decoding.
//!
//! A scalar whose trimmed text is exactly `${NAME}` is replaced by the value of the environment
//! variable `NAME` (the name is trimmed too). Working on the text, line by line, keeps every line
//! where it was, so YAML errors still point at the right line. Recognised positions:
//!
//! * the value after `key:` (`key: ${NAME}`), also after list markers (`- key: ${NAME}`);
//! * a list item (`- ${NAME}`, `- - ${NAME}`);
//!
//! each optionally quoted (`"${NAME}"`, `'${NAME}'`) and optionally followed by a ` # comment`;
//! and a quoted item or value of a flow collection (`["${A}", '${B}']`, `{id: "${A}"}`), also
//! one that spans lines. Unquoted, `${A}` is no scalar inside `[ ]` or `{ }` (the `{` opens a
//! mapping): the YAML reader refuses it, as the Go server's does.
//!
//! The value is inserted as a YAML double-quoted string, so any text (a `#`, a `:`, quotes,
//! newlines) comes through unchanged and is always a string to the schema.
//!
//! Not substituted: partial interpolation (`prefix-${NAME}`), block scalars (`|`, `>`), mapping
//! keys, and comments.
//!
//! This module must never put a variable's value into an error message: values are often secrets
//! (an AppRole secret ID). [`Substitution`] records where values went so that later errors can be
//! scrubbed of them.

use std::fmt;

/// Added to a decoding error on a line with a `${` that was not replaced.
pub(crate) const NOT_REPLACED_HINT: &str = " (note: ${NAME} is replaced only when it is the whole value after 'key:' \
     or '- ', or a quoted item inside [ ] or { } such as [\"${NAME}\"])";

/// One substitution that was made: which line, which variable, what value.
#[derive(Clone)]
pub(crate) struct Substitution {
    pub line: usize,
    pub var: String,
    pub value: String,
}

impl fmt::Debug for Substitution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Substitution")
            .field("line", &self.line)
            .field("var", &self.var)
            .field("value", &"<redacted>")
            .finish()
    }
}

/// A substitution failure: the 1-based line and a message (never containing a value).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct EnvError {
    pub line: usize,
    pub message: String,
}

/// Replaces every `${NAME}` scalar in `text` using `lookup` (normally [`std::env::var`]).
pub(crate) fn substitute(
    text: &str,
    lookup: impl Fn(&str) -> Result<String, std::env::VarError>,
) -> Result<(String, Vec<Substitution>), EnvError> {
    let mut out = String::with_capacity(text.len());
    let mut subs = Vec::new();
    // Indentation of the line that opened a block scalar (`key: |`); lines indented deeper are
    // its content and are left alone.
    let mut block_scalar_indent: Option<usize> = None;
    // How deep the line is inside a flow collection that an earlier line opened.
    let mut flow_depth = 0usize;

    for (index, raw_line) in text.split_inclusive('\n').enumerate() {
        let line_no = index + 1;
        let (line, ending) = split_line_ending(raw_line);
        let indent = line.len() - line.trim_start_matches([' ', '\t']).len();

        if flow_depth > 0 {
            substitute_flow(
                line,
                0,
                &mut flow_depth,
                line_no,
                &lookup,
                &mut out,
                &mut subs,
            )?;
            out.push_str(ending);
            continue;
        }

        if let Some(block_indent) = block_scalar_indent {
            if line.trim().is_empty() || indent > block_indent {
                out.push_str(raw_line);
                continue;
            }
            block_scalar_indent = None;
        }

        if block_scalar_indent.is_none()
            && let Some(start) = flow_start(line)
        {
            substitute_flow(
                line,
                start,
                &mut flow_depth,
                line_no,
                &lookup,
                &mut out,
                &mut subs,
            )?;
            out.push_str(ending);
            continue;
        }
        let Some(slot) = find_value(line) else {
            out.push_str(raw_line);
            continue;
        };
        let value_text = &line[slot.start..];
        if starts_block_scalar(value_text) {
            block_scalar_indent = Some(indent);
            out.push_str(raw_line);
            continue;
        }
        let Some(reference) = parse_reference(value_text) else {
            out.push_str(raw_line);
            continue;
        };
        let value = lookup_var(&lookup, reference.name, line_no)?;
        out.push_str(&line[..slot.start]);
        push_double_quoted(&mut out, &value);
        out.push_str(reference.rest);
        out.push_str(ending);
        subs.push(Substitution {
            line: line_no,
            var: reference.name.to_owned(),
            value,
        });
    }
    Ok((out, subs))
}

/// Where a flow collection starts on a block-style line: the `[` or `{` that is the value after
/// `key:` or `- ` markers (or the whole line).
fn flow_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut pos = skip_blanks(bytes, 0);
    while pos < bytes.len()
        && bytes[pos] == b'-'
        && bytes.get(pos + 1).is_none_or(|b| *b == b' ' || *b == b'\t')
    {
        pos = skip_blanks(bytes, pos + 1);
    }
    match bytes.get(pos)? {
        b'[' | b'{' => return Some(pos),
        b'#' => return None,
        _ => {}
    }
    let sep = find_key_separator(line, pos)?;
    let start = skip_blanks(bytes, sep + 1);
    matches!(bytes.get(start), Some(b'[' | b'{')).then_some(start)
}

/// Copies `line` to `out`, from `start` on as the text of a flow collection, replacing every
/// quoted item or mapping value whose trimmed text is `${NAME}`. `depth` is the nesting depth at
/// the start of `line[start..]` and is left at the depth at its end.
fn substitute_flow(
    line: &str,
    start: usize,
    depth: &mut usize,
    line_no: usize,
    lookup: &impl Fn(&str) -> Result<String, std::env::VarError>,
    out: &mut String,
    subs: &mut Vec<Substitution>,
) -> Result<(), EnvError> {
    let bytes = line.as_bytes();
    out.push_str(&line[..start]);
    let mut i = start;
    // The last character outside a scalar that is not a blank: what the next item follows.
    let mut previous: Option<u8> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'#' if i == 0 || matches!(bytes[i - 1], b' ' | b'\t') => break,
            b'[' | b'{' => *depth += 1,
            b']' | b'}' => {
                *depth = depth.saturating_sub(1);
                if *depth == 0 {
                    // The collection ends here: the rest of the line is no flow text.
                    out.push_str(&line[i..]);
                    return Ok(());
                }
            }
            b'"' | b'\'' => {
                let end = quoted_end(bytes, i);
                let Some(end) = end else {
                    // Unterminated on this line: leave the rest to the YAML reader.
                    break;
                };
                let scalar = &line[i..=end];
                let next = bytes[end + 1..]
                    .iter()
                    .find(|c| !matches!(c, b' ' | b'\t'))
                    .copied();
                let whole_item = matches!(previous, None | Some(b'[' | b'{' | b',' | b':'))
                    && matches!(next, None | Some(b',' | b']' | b'}' | b'#'));
                let inner = &scalar[1..scalar.len() - 1];
                let name = inner
                    .trim()
                    .strip_prefix("${")
                    .and_then(|r| r.strip_suffix('}'))
                    .map(str::trim)
                    .filter(|n| !n.is_empty() && !n.contains(['$', '{', '}', '=', '\0']));
                match name {
                    Some(name) if whole_item && !(b == b'"' && inner.contains('\\')) => {
                        let value = lookup_var(lookup, name, line_no)?;
                        push_double_quoted(out, &value);
                        subs.push(Substitution {
                            line: line_no,
                            var: name.to_owned(),
                            value,
                        });
                    }
                    _ => out.push_str(scalar),
                }
                previous = Some(b);
                i = end + 1;
                continue;
            }
            _ => {}
        }
        if !matches!(b, b' ' | b'\t') {
            previous = Some(b);
        }
        // Multi-byte characters are copied byte by byte; the string stays valid UTF-8 because
        // every boundary we cut at is an ASCII byte.
        i += 1;
        let from = i - 1;
        let mut to = i;
        while to < bytes.len() && !line.is_char_boundary(to) {
            to += 1;
        }
        out.push_str(&line[from..to]);
        i = to;
    }
    out.push_str(&line[i..]);
    Ok(())
}

/// The index of the quote that closes the quoted scalar opening at `open`, on this line.
fn quoted_end(bytes: &[u8], open: usize) -> Option<usize> {
    let quote = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == b'"' => i += 2,
            b'\'' if quote == b'\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            c if c == quote => return Some(i),
            _ => i += 1,
        }
    }
    None
}

fn lookup_var(
    lookup: &impl Fn(&str) -> Result<String, std::env::VarError>,
    name: &str,
    line: usize,
) -> Result<String, EnvError> {
    lookup(name).map_err(|e| EnvError {
        line,
        message: match e {
            std::env::VarError::NotPresent => format!("environment variable '{name}' is not set"),
            std::env::VarError::NotUnicode(_) => {
                format!("environment variable '{name}' is not valid UTF-8")
            }
        },
    })
}

/// Checks that every substituted value ended up as one whole string of the document:
/// `Err(Ok(sub))` names the first that did not, `Err(Err(e))` is the YAML error of a text that
/// is no single document.
///
/// The scan above works line by line and cannot tell a `key: ${NAME}` or `- ${NAME}` line from
/// the continuation of a plain scalar begun on an earlier line. There the inserted quotes are
/// plain text and a ` #` in the value starts a comment, so the decoder would see (and might quote
/// in an error) a fragment of the value that no scrubbing can recognise
/// (fuzz/regressions/config/env-value-*). The whole document is read first because the schema
/// decoder stops at the first wrong type, possibly a scalar holding such a fragment, before it
/// reaches a syntax error further down; errors of this reading quote no scalar.
pub(crate) fn check_whole_values<'a>(
    text: &str,
    subs: &'a [Substitution],
) -> Result<(), Result<&'a Substitution, yaml_serde::Error>> {
    fn strings<'v>(value: &'v yaml_serde::Value, out: &mut Vec<&'v str>) {
        match value {
            yaml_serde::Value::String(s) => out.push(s),
            yaml_serde::Value::Sequence(items) => items.iter().for_each(|v| strings(v, out)),
            yaml_serde::Value::Mapping(map) => map.values().for_each(|v| strings(v, out)),
            yaml_serde::Value::Tagged(tagged) => strings(&tagged.value, out),
            _ => {}
        }
    }
    if subs.is_empty() {
        return Ok(());
    }
    let document: yaml_serde::Value = yaml_serde::from_str(text).map_err(Err)?;
    let mut found = Vec::new();
    strings(&document, &mut found);
    match subs.iter().find(|s| !found.contains(&s.value.as_str())) {
        Some(sub) => Err(Ok(sub)),
        None => Ok(()),
    }
}

fn split_line_ending(line: &str) -> (&str, &str) {
    if let Some(l) = line.strip_suffix("\r\n") {
        (l, "\r\n")
    } else if let Some(l) = line.strip_suffix('\n') {
        (l, "\n")
    } else {
        (line, "")
    }
}

/// Where the value of a block-style line starts.
struct Slot {
    start: usize,
}

/// Finds the start of the value on a line: after any `- ` list markers, and after a `key:`
/// separator if there is one. `None` for blank lines, comments, directives and lines without a
/// value position.
fn find_value(line: &str) -> Option<Slot> {
    let bytes = line.as_bytes();
    let mut pos = skip_blanks(bytes, 0);
    if pos >= bytes.len()
        || bytes[pos] == b'#'
        || line[pos..].starts_with("---")
        || bytes[pos] == b'%'
    {
        return None;
    }
    // List markers: `-` followed by a blank or the end of the line.
    while pos < bytes.len()
        && bytes[pos] == b'-'
        && bytes.get(pos + 1).is_none_or(|b| *b == b' ' || *b == b'\t')
    {
        pos = skip_blanks(bytes, pos + 1);
    }
    if pos >= bytes.len() {
        return None;
    }
    // A whole-item reference (`- ${X}`, `- "${X}"`) is a value, not a key.
    if parse_reference(&line[pos..]).is_some() {
        return Some(Slot { start: pos });
    }
    let sep = find_key_separator(line, pos)?;
    let start = skip_blanks(bytes, sep + 1);
    Some(Slot { start })
}

fn skip_blanks(bytes: &[u8], mut pos: usize) -> usize {
    while pos < bytes.len() && (bytes[pos] == b' ' || bytes[pos] == b'\t') {
        pos += 1;
    }
    pos
}

/// Index of the `:` that ends a mapping key starting at `pos` (the `:` must be followed by a blank
/// or the end of the line, as YAML requires in block style).
fn find_key_separator(line: &str, pos: usize) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut i = pos;
    match bytes.get(pos) {
        Some(b'"') => {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                i += 1;
            }
            i = skip_blanks(bytes, i + 1);
            return (bytes.get(i) == Some(&b':') && is_blank_or_end(bytes, i + 1)).then_some(i);
        }
        Some(b'\'') => {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return None,
                    Some(b'\'') if bytes.get(i + 1) == Some(&b'\'') => i += 2,
                    Some(b'\'') => break,
                    Some(_) => i += 1,
                }
            }
            i = skip_blanks(bytes, i + 1);
            return (bytes.get(i) == Some(&b':') && is_blank_or_end(bytes, i + 1)).then_some(i);
        }
        Some(b'[' | b'{') => return None, // flow collections are not handled
        _ => {}
    }
    while i < bytes.len() {
        match bytes[i] {
            b':' if is_blank_or_end(bytes, i + 1) => return Some(i),
            // ` #` starts a comment: no key separator after it.
            b'#' if i > pos && matches!(bytes[i - 1], b' ' | b'\t') => return None,
            _ => i += 1,
        }
    }
    None
}

fn is_blank_or_end(bytes: &[u8], i: usize) -> bool {
    bytes.get(i).is_none_or(|b| *b == b' ' || *b == b'\t')
}

fn starts_block_scalar(value: &str) -> bool {
    let v = value.split(" #").next().unwrap_or("").trim_end();
    let mut chars = v.chars();
    matches!(chars.next(), Some('|' | '>')) && chars.all(|c| matches!(c, '+' | '-' | '0'..='9'))
}

/// A `${NAME}` reference that makes up a whole scalar.
struct Reference<'a> {
    /// The trimmed variable name.
    name: &'a str,
    /// What follows the scalar on the line (blanks and a comment), kept verbatim.
    rest: &'a str,
}

/// Parses `value` (the text from the value position to the end of the line) as a plain, single-
/// or double-quoted scalar whose trimmed text is exactly `${NAME}`.
fn parse_reference(value: &str) -> Option<Reference<'_>> {
    let (scalar, rest) = match value.as_bytes().first()? {
        b'"' => {
            let close = value[1..].find('"')? + 1;
            let inner = &value[1..close];
            if inner.contains('\\') {
                return None; // escapes are not worth interpreting here
            }
            (inner, &value[close + 1..])
        }
        b'\'' => {
            let close = value[1..].find('\'')? + 1;
            (&value[1..close], &value[close + 1..])
        }
        _ => {
            // A plain scalar ends at ` #` (a comment) or at the end of the line.
            let end = value
                .find(" #")
                .or_else(|| value.find("\t#"))
                .unwrap_or(value.len());
            (&value[..end], &value[end..])
        }
    };
    let trimmed_rest = rest.trim_start_matches([' ', '\t']);
    if !(trimmed_rest.is_empty() || trimmed_rest.starts_with('#')) {
        return None;
    }
    let inner = scalar.trim().strip_prefix("${")?.strip_suffix('}')?;
    let name = inner.trim();
    if name.is_empty() || name.contains(['$', '{', '}', '=', '\0']) {
        return None;
    }
    Some(Reference { name, rest })
}

/// Appends `value` as a YAML double-quoted scalar.
fn push_double_quoted(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\0' => out.push_str("\\0"),
            // Other control characters, DEL, the C1 controls and the Unicode line/paragraph
            // separators are not allowed (or change line numbering) inside a YAML scalar.
            c if c.is_control() || c == '\u{2028}' || c == '\u{2029}' || c == '\u{feff}' => {
                let n = c as u32;
                if n <= 0xff {
                    out.push_str(&format!("\\x{n:02x}"));
                } else {
                    out.push_str(&format!("\\u{n:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::env::VarError;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Result<String, VarError> {
        let vars: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            vars.iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .ok_or(VarError::NotPresent)
        }
    }

    fn subst(text: &str, vars: &[(&str, &str)]) -> String {
        substitute(text, env(vars))
            .map(|(t, _)| t)
            .unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn substitutes_values_after_keys() {
        let vars = [("A", "alpha")];
        assert_eq!(subst("key: ${A}\n", &vars), "key: \"alpha\"\n");
        assert_eq!(subst("  key:   ${A}  \n", &vars), "  key:   \"alpha\"\n");
        assert_eq!(subst("key: ${ A }\n", &vars), "key: \"alpha\"\n");
        assert_eq!(subst("key: \"${A}\"\n", &vars), "key: \"alpha\"\n");
        assert_eq!(subst("key: ' ${A} '\n", &vars), "key: \"alpha\"\n");
        assert_eq!(
            subst("key: ${A} # the comment\n", &vars),
            "key: \"alpha\" # the comment\n"
        );
        assert_eq!(subst("key: '${A}' # c\n", &vars), "key: \"alpha\" # c\n");
        assert_eq!(subst("/v1/ready: ${A}\n", &vars), "/v1/ready: \"alpha\"\n");
        assert_eq!(
            subst("\"quoted key\": ${A}\n", &vars),
            "\"quoted key\": \"alpha\"\n"
        );
        assert_eq!(subst("'it''s': ${A}\n", &vars), "'it''s': \"alpha\"\n");
        assert_eq!(
            subst("key: ${A}\r\nnext: 1\r\n", &vars),
            "key: \"alpha\"\r\nnext: 1\r\n"
        );
        assert_eq!(subst("key: ${A}", &vars), "key: \"alpha\"");
    }

    #[test]
    fn substitutes_list_items() {
        let vars = [("A", "alpha"), ("B", "beta")];
        assert_eq!(
            subst("list:\n- ${A}\n  - \"${B}\" # c\n", &vars),
            "list:\n- \"alpha\"\n  - \"beta\" # c\n"
        );
        assert_eq!(subst("- - ${A}\n", &vars), "- - \"alpha\"\n");
        assert_eq!(
            subst("keys:\n  - name: ${A}\n", &vars),
            "keys:\n  - name: \"alpha\"\n"
        );
    }

    #[test]
    fn leaves_other_text_alone() {
        let vars = [("A", "alpha")];
        for text in [
            "key: foo${A}\n",
            "key: ${A}bar\n",
            "key: ${A}${A}\n",
            "key: $A\n",
            "key: ${}\n",
            "key: [${A}]\n",
            "key: {x: ${A}}\n",
            "- [${A}]\n",
            "key: [\"x${A}\"]\n",
            "key: [\"${A}\" x]\n",
            "key: {\"${A}\": x}\n",
            "key: [\"\\${A}\"]\n",
            "key: x # [\"${A}\"]\n",
            "# key: ${A}\n",
            "   # - ${A}\n",
            "${A}: value\n",
            "key:${A}\n",
            "key: \"\\${A}\"\n",
            "key: '${A}' trailing\n",
            "url: http://x:${A}\n",
        ] {
            assert_eq!(subst(text, &vars), text, "{text}");
        }
    }

    #[test]
    fn substitutes_quoted_items_of_flow_collections() {
        let vars = [("A", "alpha"), ("B", "beta")];
        assert_eq!(
            subst("ids: [\"${A}\", '${B}', x]\n", &vars),
            "ids: [\"alpha\", \"beta\", x]\n"
        );
        assert_eq!(
            subst("ids: [ \" ${A} \" ]\n", &vars),
            "ids: [ \"alpha\" ]\n"
        );
        assert_eq!(
            subst("- {id: '${A}', n: \"${B}\"} # c \"${A}\"\n", &vars),
            "- {id: \"alpha\", n: \"beta\"} # c \"${A}\"\n"
        );
        assert_eq!(
            subst("ids: [\n  \"${A}\",\n  [ '${B}' ]\n]\nnext: ${A}\n", &vars),
            "ids: [\n  \"alpha\",\n  [ \"beta\" ]\n]\nnext: \"alpha\"\n"
        );
        assert_eq!(
            subst("k: ['it''s', \"a\\\"b\", \"${A}\"]\n", &vars),
            "k: ['it''s', \"a\\\"b\", \"alpha\"]\n"
        );
        assert_eq!(
            subst("k: [\"é\", \"${A}\"]\n", &vars),
            "k: [\"é\", \"alpha\"]\n"
        );
        let err = substitute("a: 1\nb: [\"${NOPE}\"]\n", env(&[])).unwrap_err();
        assert_eq!(err.line, 2);
        assert_eq!(err.message, "environment variable 'NOPE' is not set");
    }

    #[test]
    fn leaves_block_scalars_alone() {
        let vars = [("A", "alpha")];
        let text = "pem: |\n  key: ${A}\n  - ${A}\n\nnext: ${A}\n";
        assert_eq!(
            subst(text, &vars),
            "pem: |\n  key: ${A}\n  - ${A}\n\nnext: \"alpha\"\n"
        );
    }

    #[test]
    fn escapes_values() {
        let vars = [("A", "a\"b\\c\nd\te # f: g\u{7}\u{2028}é")];
        assert_eq!(
            subst("key: ${A}\n", &vars),
            "key: \"a\\\"b\\\\c\\nd\\te # f: g\\x07\\u2028é\"\n"
        );
        // The escaped value decodes back to the original.
        let decoded: std::collections::BTreeMap<String, String> =
            yaml_serde::from_str(&subst("key: ${A}\n", &vars)).unwrap();
        assert_eq!(decoded["key"], vars[0].1);
    }

    #[test]
    fn unset_variable_names_variable_and_line() {
        let err = substitute("a: 1\n\nb:\n  - ${SECRET_ID}\n", env(&[])).unwrap_err();
        assert_eq!(
            err,
            EnvError {
                line: 4,
                message: "environment variable 'SECRET_ID' is not set".into()
            }
        );
    }

    #[test]
    fn records_substitutions() {
        let (_, subs) = substitute("a: ${A}\nb: 2\nc: ${A}\n", env(&[("A", "hunter2")])).unwrap();
        let lines: Vec<(usize, &str)> = subs.iter().map(|s| (s.line, s.var.as_str())).collect();
        assert_eq!(lines, [(1, "A"), (3, "A")]);
        assert!(subs.iter().all(|s| s.value == "hunter2"));
        assert!(!format!("{subs:?}").contains("hunter2"));
    }
}
