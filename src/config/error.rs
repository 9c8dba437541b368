//! The error of loading a config file: what is wrong, in which file, on which line.

use super::env::Substitution;
use std::fmt;
use std::path::{Path, PathBuf};

/// The forms in which a decoder error may show a string value: as is, as serde quotes it (Rust's
/// `Debug`, which escapes `"` but not `'`), and as `escape_debug` writes it (both); each with
/// backquotes turned into quotes as [`Error::from_yaml`] does to the message. A value holding both
/// kinds of quote was once shown in full because only the first and last forms were compared
/// (fuzz/regressions/config/env-value-with-both-quotes).
fn shown_forms(value: &str) -> [String; 3] {
    let debug = format!("{value:?}");
    // `Debug` of a str is the escaped text between two ASCII quotes.
    let debug = debug.get(1..debug.len() - 1).unwrap_or_default().to_owned();
    [value.to_owned(), value.escape_debug().to_string(), debug].map(|f| f.replace('`', "'"))
}

/// Marks a message produced by this module's validation that already names what it is about, so
/// the YAML path that the decoder puts in front of every message is dropped (see [`Error::from_yaml`]).
pub(crate) const STANDALONE: char = '\u{1}';

/// Why a configuration could not be loaded.
///
/// `Display` gives `<file>: line <n>: <message>` (`config: line <n>: …` when the text did not come
/// from a file; the line is left out when the problem is not tied to one line, e.g. a missing
/// section). Messages never contain the value of an environment variable or a secret.
#[derive(Debug)]
pub struct Error {
    file: Option<PathBuf>,
    line: Option<usize>,
    message: String,
    source: Option<std::io::Error>,
}

impl Error {
    /// An error not tied to a line.
    pub(crate) fn new(message: impl Into<String>) -> Error {
        Error {
            file: None,
            line: None,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn at_line(line: usize, message: impl Into<String>) -> Error {
        Error {
            file: None,
            line: Some(line),
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn io(file: &Path, err: std::io::Error) -> Error {
        Error {
            file: Some(file.to_path_buf()),
            line: None,
            message: format!("cannot read the config file: {err}"),
            source: Some(err),
        }
    }

    pub(crate) fn in_file(mut self, file: Option<&Path>) -> Error {
        if let Some(file) = file {
            self.file = Some(file.to_path_buf());
        }
        self
    }

    /// Turns a decoder error into ours: the line goes into [`Error::line`], the trailing
    /// `at line N column M` is dropped, backquotes become single quotes, and any value that came
    /// from an environment variable is replaced by `${NAME}`.
    pub(crate) fn from_yaml(err: yaml_serde::Error, subs: &[Substitution]) -> Error {
        let location = err.location();
        let mut message = err.to_string();
        // The line is shown in front of the message.
        if let Some(loc) = &location {
            let at = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(i) = message.find(&at) {
                message.replace_range(i..i + at.len(), "");
            }
        }
        let message = drop_columns(&message);
        // Our own messages already name what they are about: drop the decoder's path prefix.
        let message = match message.find(STANDALONE) {
            Some(i) => &message[i + STANDALONE.len_utf8()..],
            None => &message,
        };
        let mut message = message.replace('`', "'");
        let line = location.map(|l| l.line());
        for sub in subs.iter().filter(|s| !s.value.is_empty()) {
            for form in shown_forms(&sub.value) {
                for (open, close) in [("'", "'"), ("\"", "\""), ("(", ")")] {
                    let quoted = format!("{open}{form}{close}");
                    message = message.replace(&quoted, &format!("{open}${{{}}}{close}", sub.var));
                }
            }
        }
        // Never risk showing a value in some other form (the decoder escapes some characters when
        // it quotes a string). Values shorter than 4 bytes are no secret and would match ordinary
        // words of the message. Values from other lines can be shown too (a plain scalar folded
        // over several lines is reported at its first line: fuzz/regressions/config), but short
        // ones would match the field names the decoder lists, so those count from 8 bytes.
        let shown = subs.iter().find(|s| {
            let relevant = (Some(s.line) == line && s.value.len() >= 4) || s.value.len() >= 8;
            relevant
                && shown_forms(&s.value)
                    .iter()
                    .any(|f| message.contains(f.as_str()))
        });
        if let Some(sub) = shown {
            message = format!("invalid value from environment variable '{}'", sub.var);
        }
        Error {
            file: None,
            line,
            message,
            source: None,
        }
    }

    pub(crate) fn with_hint(mut self, hint: &str) -> Error {
        self.message.push_str(hint);
        self
    }

    /// The config file, when the configuration was loaded from one.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// The 1-based line the problem is on, when it is tied to one.
    pub fn line(&self) -> Option<usize> {
        self.line
    }

    /// The message without file and line.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// `… at line 3 column 7` -> `… at line 3` (a syntax error mentions where its context began).
fn drop_columns(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(i) = rest.find(" column ") {
        let digits = rest[i + 8..].bytes().take_while(u8::is_ascii_digit).count();
        let after_line = rest[..i]
            .rsplit_once(" line ")
            .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if digits > 0 && after_line {
            out.push_str(&rest[..i]);
        } else {
            out.push_str(&rest[..i + 8 + digits]);
        }
        rest = &rest[i + 8 + digits..];
    }
    out.push_str(rest);
    out
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: ", file.display())?,
            None => f.write_str("config: ")?,
        }
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}
