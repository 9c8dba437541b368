//! How client commands print. There are three modes:
//! * **JSON** (`--json`): the shapes the Go `kes` command prints with `--json`;
//! * **text** (standard output not a terminal): exactly what the Go `kes` command prints there
//!   (see [`crate::cli::gotext`]), so that operators' `grep`/`awk` scripts keep working;
//! * **terminal**: aligned columns and (unless NO_COLOR is set or `--color never`) a little
//!   colour.
//!
//! All output goes through [`Output`] so that a closed pipe (`kes log | head -1`) ends the
//! command quietly instead of with an error, and so that colour decisions live in one place.

use crate::cli::Error;
use serde::Serialize;
use std::io::{IsTerminal as _, Write as _};
use std::time::Duration;
use time::OffsetDateTime;

/// A text style, rendered as an ANSI SGR sequence when colour is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Bold,
    Dim,
    BoldDim,
    Underline,
    Green,
    Yellow,
    Red,
    Cyan,
    Blue,
    BoldGreen,
    BoldCyan,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Bold => "1",
            Style::Dim => "2",
            Style::BoldDim => "1;2",
            Style::Underline => "4",
            Style::Green => "32",
            Style::Yellow => "33",
            Style::Red => "31",
            Style::Cyan => "36",
            Style::Blue => "34",
            Style::BoldGreen => "1;32",
            Style::BoldCyan => "1;36",
        }
    }
}

/// The output mode of one command run.
#[derive(Debug, Clone, Copy)]
pub struct Output {
    /// Print JSON (`--json`).
    pub json: bool,
    /// Standard output is a terminal (in-place refresh and progress bars are possible). Without
    /// a terminal and without `--json`, commands print what the Go `kes` command prints.
    pub terminal: bool,
    /// Use ANSI colours.
    pub color: bool,
}

/// `--color <when>`, as in the Go `kes` command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ColorWhen {
    /// Colours on a terminal, unless NO_COLOR is set.
    #[default]
    Auto,
    Never,
    Always,
}

/// True when the NO_COLOR convention (no-color.org) asks for no colour.
pub fn no_color() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
}

impl Output {
    /// The mode for standard output, with colours decided automatically.
    pub fn new(json_flag: bool) -> Output {
        Output::with_color(json_flag, ColorWhen::Auto)
    }

    /// The mode for standard output and `--color <when>`.
    pub fn with_color(json_flag: bool, when: ColorWhen) -> Output {
        let terminal = std::io::stdout().is_terminal();
        let mut out = Output::with(json_flag, terminal, no_color());
        match when {
            ColorWhen::Auto => {}
            ColorWhen::Never => out.color = false,
            ColorWhen::Always => out.color = !json_flag,
        }
        out
    }

    pub fn with(json_flag: bool, terminal: bool, no_color: bool) -> Output {
        Output {
            json: json_flag,
            terminal,
            color: terminal && !json_flag && !no_color,
        }
    }

    /// Neither `--json` nor a terminal: print what the Go `kes` command prints.
    pub fn plain(&self) -> bool {
        !self.json && !self.terminal
    }

    /// `text` in `style` when colour is on.
    pub fn paint(&self, style: Style, text: &str) -> String {
        if self.color {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_string()
        }
    }

    /// Writes text to standard output and flushes it.
    pub fn print(&self, text: &str) -> Result<(), Error> {
        write_stdout(text.as_bytes())
    }

    /// Writes one value as a line of JSON.
    pub fn print_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), Error> {
        let mut line = serde_json::to_vec(value)
            .map_err(|e| Error::Failed(format!("cannot encode JSON output: {e}")))?;
        line.push(b'\n');
        let result = write_stdout(&line);
        zeroize::Zeroize::zeroize(&mut line);
        result
    }
}

/// Writes bytes to standard output; a closed pipe becomes [`Error::BrokenPipe`].
pub fn write_stdout(bytes: &[u8]) -> Result<(), Error> {
    let mut out = std::io::stdout().lock();
    out.write_all(bytes)
        .and_then(|()| out.flush())
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::BrokenPipe => Error::BrokenPipe,
            _ => Error::Failed(format!("cannot write to standard output: {e}")),
        })
}

/// Rows of text cells printed as aligned columns. Cells may hold colour sequences: widths are
/// taken from the text without them.
#[derive(Debug, Default)]
pub struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new() -> Table {
        Table::default()
    }

    pub fn row<I, S>(&mut self, cells: I)
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.rows.push(cells.into_iter().map(Into::into).collect());
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table as lines; columns are separated by two spaces, the last column is not padded.
    pub fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(visible_width(cell));
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - visible_width(cell) + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }
}

/// The number of characters of `s` a terminal shows (ANSI escape sequences excluded).
pub fn visible_width(s: &str) -> usize {
    let mut width = 0;
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters final-byte
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            width += 1;
        }
    }
    width
}

/// Removes control characters (escape sequences included) from text that came from a server,
/// so that a hostile name cannot move the cursor or change colours of the terminal.
pub fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).collect()
}

/// A duration for people: `850ns`, `1.2ms`, `3.4s`, `2m5s`, `3h12m`, `4d2h`.
pub fn human_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos < 1_000 {
        format!("{nanos}ns")
    } else if nanos < 1_000_000 {
        format!("{:.1}µs", nanos as f64 / 1e3)
    } else if nanos < 1_000_000_000 {
        format!("{:.1}ms", nanos as f64 / 1e6)
    } else {
        let secs = d.as_secs();
        if secs < 60 {
            format!("{:.1}s", d.as_secs_f64())
        } else if secs < 3600 {
            format!("{}m{}s", secs / 60, secs % 60)
        } else if secs < 86_400 {
            format!("{}h{}m", secs / 3600, secs % 3600 / 60)
        } else {
            format!("{}d{}h", secs / 86_400, secs % 86_400 / 3600)
        }
    }
}

/// A number of bytes for people: `512 B`, `1.5 KiB`, `12.0 MiB`.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// An RFC 3339 timestamp of the server as `2024-01-12 10:39:20 UTC (3 hours ago)`; the zero
/// time of legacy keys as `unknown`; anything unparsable as it is.
pub fn human_time(rfc3339: &str, now: OffsetDateTime) -> String {
    if rfc3339.is_empty() || rfc3339.starts_with("0001-01-01") {
        return "unknown".into();
    }
    let Ok(t) = OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
    else {
        return sanitize(rfc3339);
    };
    let t = t.to_offset(time::UtcOffset::UTC);
    let when = format!("{} UTC", crate::gojson::date_time(t, ' '));
    let age = now - t;
    if age.is_negative() {
        return when;
    }
    let age = Duration::from_secs(u64::try_from(age.whole_seconds()).unwrap_or(0));
    if age.as_secs() < 1 {
        format!("{when} (just now)")
    } else {
        // Whole units read better than the precise duration here.
        let secs = age.as_secs();
        let ago = match secs {
            0..60 => format!("{secs} seconds"),
            60..3600 => plural(secs / 60, "minute"),
            3600..86_400 => plural(secs / 3600, "hour"),
            _ => plural(secs / 86_400, "day"),
        };
        format!("{when} ({ago} ago)")
    }
}

fn plural(n: u64, unit: &str) -> String {
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes() {
        let tty = Output::with(false, true, false);
        assert!(!tty.json && tty.color);
        assert!(Output::with(true, true, false).json);
        assert!(!Output::with(true, true, false).color);
        let pipe = Output::with(false, false, false);
        assert!(!pipe.json && !pipe.color && pipe.plain());
        assert!(!tty.plain() && !Output::with(true, false, false).plain());
        let no_color = Output::with(false, true, true);
        assert!(!no_color.json && !no_color.color);
        assert_eq!(no_color.paint(Style::Red, "x"), "x");
        assert_eq!(tty.paint(Style::Red, "x"), "\x1b[31mx\x1b[0m");
    }

    #[test]
    fn tables_align_without_counting_colours() {
        let tty = Output::with(false, true, false);
        let mut t = Table::new();
        t.row(["NAME", "ALGORITHM"]);
        t.row([tty.paint(Style::Bold, "a"), "AES256".into()]);
        t.row(["long-name".to_string(), "ChaCha20".to_string()]);
        let text = t.render();
        let plain: Vec<String> = text
            .lines()
            .map(|l| l.replace("\x1b[1m", "").replace("\x1b[0m", ""))
            .collect();
        assert_eq!(
            plain,
            [
                "NAME       ALGORITHM",
                "a          AES256",
                "long-name  ChaCha20"
            ]
        );
    }

    #[test]
    fn human_units() {
        assert_eq!(human_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(human_duration(Duration::from_micros(1500)), "1.5ms");
        assert_eq!(human_duration(Duration::from_secs(125)), "2m5s");
        assert_eq!(human_duration(Duration::from_secs(3 * 3600 + 720)), "3h12m");
        assert_eq!(
            human_duration(Duration::from_secs(2 * 86_400 + 3600)),
            "2d1h"
        );
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12 << 20), "12.0 MiB");
        let now = OffsetDateTime::from_unix_timestamp(1_705_066_761).unwrap();
        assert_eq!(
            human_time("2024-01-12T10:39:20.886816Z", now),
            "2024-01-12 10:39:20 UTC (3 hours ago)"
        );
        assert_eq!(human_time("0001-01-01T00:00:00Z", now), "unknown");
        assert_eq!(human_time("yesterday\x1b[2J", now), "yesterday[2J");
        assert_eq!(sanitize("a\x1b]0;t\x07b\n"), "a]0;tb");
    }
}
