//! A strict parser of the Prometheus text exposition format 0.0.4, for tests: it parses (never
//! greps) and rejects what a careful scraper would object to.
//!
//! Checked: metric and label name syntax; label value escapes; values (floats, `+Inf`, `-Inf`,
//! `NaN`); at most one HELP and one TYPE per family, TYPE before the family's samples; every
//! sample belongs to a typed family (no untyped samples); a family's samples are contiguous; no
//! series twice; counters are not negative; histograms have `le` on every bucket, buckets in
//! increasing `le` order with non-decreasing counts, a `+Inf` bucket equal to `_count`, and a
//! `_sum`.

use std::collections::{BTreeMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The sample's own name (for histograms: `<family>_bucket`, `_sum`, `_count`).
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

#[derive(Debug, Clone)]
pub struct Family {
    pub name: String,
    pub kind: Kind,
    pub help: Option<String>,
    pub samples: Vec<Sample>,
}

impl Family {
    /// The value of the sample whose labels are exactly `labels` (and, for histograms, the
    /// sample named `<family><suffix>`).
    pub fn get(&self, suffix: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let name = format!("{}{suffix}", self.name);
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .iter()
            .find(|s| s.name == name && s.labels == want)
            .map(|s| s.value)
    }

    /// The value of an unlabelled counter or gauge.
    pub fn value(&self) -> f64 {
        assert_eq!(
            self.samples.len(),
            1,
            "{} has {} samples",
            self.name,
            self.samples.len()
        );
        assert!(
            self.samples[0].labels.is_empty(),
            "{} is labelled",
            self.name
        );
        self.samples[0].value
    }

    /// The number of distinct metrics (label sets, ignoring a histogram's `le`), which is what
    /// the Go SDK counts as "samples" of a family.
    pub fn metric_count(&self) -> usize {
        let sets: HashSet<Vec<(String, String)>> = self
            .samples
            .iter()
            .map(|s| {
                s.labels
                    .iter()
                    .filter(|(k, _)| !(self.kind == Kind::Histogram && *k == "le"))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect()
            })
            .collect();
        sets.len()
    }

    /// Histogram `_count`.
    pub fn count(&self) -> f64 {
        self.get("_count", &[]).expect("histogram _count")
    }

    /// Histogram `_sum`.
    pub fn sum(&self) -> f64 {
        self.get("_sum", &[]).expect("histogram _sum")
    }

    /// Histogram bucket `le`.
    pub fn bucket(&self, le: &str) -> f64 {
        self.get("_bucket", &[("le", le)])
            .unwrap_or_else(|| panic!("{} has no bucket le={le}", self.name))
    }
}

pub type Exposition = BTreeMap<String, Family>;

fn is_name(s: &str, colons: bool) -> bool {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    let ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || (colons && c == ':');
    (first.is_ascii_alphabetic() || first == '_' || (colons && first == ':')) && chars.all(ok)
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => {
            if s.is_empty()
                || !s
                    .chars()
                    .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'))
            {
                return Err(format!("invalid value '{s}'"));
            }
            s.parse::<f64>().map_err(|_| format!("invalid value '{s}'"))
        }
    }
}

/// Parses `name{labels} value [timestamp]`.
fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line.find(['{', ' ']).ok_or("sample without value")?;
    let name = &line[..name_end];
    if !is_name(name, true) {
        return Err(format!("invalid metric name '{name}'"));
    }
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(r) = rest.strip_prefix('{') {
        let mut r = r;
        loop {
            if let Some(after) = r.strip_prefix('}') {
                r = after;
                break;
            }
            let eq = r.find('=').ok_or("label without '='")?;
            let lname = &r[..eq];
            if !is_name(lname, false) {
                return Err(format!("invalid label name '{lname}'"));
            }
            r = r[eq + 1..]
                .strip_prefix('"')
                .ok_or("label value must be quoted")?;
            let mut value = String::new();
            let mut chars = r.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated label value".into()),
                    Some((i, '"')) => break i,
                    Some((_, '\\')) => match chars.next() {
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        Some((_, 'n')) => value.push('\n'),
                        _ => return Err("invalid escape in label value".into()),
                    },
                    Some((_, '\n')) => return Err("newline in label value".into()),
                    Some((_, c)) => value.push(c),
                }
            };
            if labels.insert(lname.to_string(), value).is_some() {
                return Err(format!("label '{lname}' twice"));
            }
            r = &r[end + 1..];
            if let Some(after) = r.strip_prefix(',') {
                r = after;
            } else if !r.starts_with('}') {
                return Err("expected ',' or '}' after a label".into());
            }
        }
        rest = r;
    }
    let rest = rest
        .strip_prefix(' ')
        .ok_or("expected a space before the value")?;
    let mut parts = rest.split(' ');
    let value = parse_value(parts.next().ok_or("sample without value")?)?;
    if let Some(ts) = parts.next() {
        ts.parse::<i64>()
            .map_err(|_| format!("invalid timestamp '{ts}'"))?;
    }
    if parts.next().is_some() {
        return Err("trailing text after the sample".into());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// The family a sample belongs to, given the families declared so far.
fn family_of<'a>(families: &'a Exposition, sample: &str) -> Option<&'a str> {
    if let Some(f) = families.get(sample) {
        return Some(&f.name);
    }
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(base) = sample.strip_suffix(suffix)
            && let Some(f) = families.get(base)
            && matches!(f.kind, Kind::Histogram | Kind::Summary)
        {
            return Some(&f.name);
        }
    }
    None
}

/// Parses a whole exposition. Errors name the line.
pub fn parse(text: &str) -> Result<Exposition, String> {
    let mut families: Exposition = BTreeMap::new();
    let mut finished: HashSet<String> = HashSet::new();
    let mut current: Option<String> = None;
    let mut series: HashSet<(String, BTreeMap<String, String>)> = HashSet::new();
    if !text.is_empty() && !text.ends_with('\n') {
        return Err("the exposition must end with a newline".into());
    }
    for (n, line) in text.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let mut parts = comment.trim_start().splitn(3, ' ');
            let keyword = parts.next().unwrap_or("");
            if keyword != "HELP" && keyword != "TYPE" {
                continue;
            }
            let name = parts.next().ok_or_else(|| at("missing name".into()))?;
            if !is_name(name, true) {
                return Err(at(format!("invalid metric name '{name}'")));
            }
            if finished.contains(name)
                || (current.as_deref() != Some(name) && families.contains_key(name))
            {
                return Err(at(format!("family '{name}' is not contiguous")));
            }
            if current.as_deref() != Some(name)
                && let Some(prev) = current.take()
            {
                finished.insert(prev);
            }
            current = Some(name.to_string());
            let text = parts.next().unwrap_or("").to_string();
            let family = families.entry(name.to_string()).or_insert(Family {
                name: name.to_string(),
                kind: Kind::Untyped,
                help: None,
                samples: Vec::new(),
            });
            if keyword == "HELP" {
                if family.help.is_some() {
                    return Err(at("second HELP".into()));
                }
                family.help = Some(text);
            } else {
                if family.kind != Kind::Untyped {
                    return Err(at("second TYPE".into()));
                }
                if !family.samples.is_empty() {
                    return Err(at("TYPE after samples".into()));
                }
                family.kind = match text.as_str() {
                    "counter" => Kind::Counter,
                    "gauge" => Kind::Gauge,
                    "histogram" => Kind::Histogram,
                    "summary" => Kind::Summary,
                    "untyped" => Kind::Untyped,
                    other => return Err(at(format!("unknown type '{other}'"))),
                };
            }
            continue;
        }
        let sample = parse_sample(line).map_err(at)?;
        let family = family_of(&families, &sample.name)
            .map(str::to_string)
            .ok_or_else(|| at("sample of an undeclared family".into()))?;
        if current.as_deref() != Some(family.as_str()) {
            return Err(at(format!("family '{family}' is not contiguous")));
        }
        if !series.insert((sample.name.clone(), sample.labels.clone())) {
            return Err(at("series appears twice".into()));
        }
        let f = families.get_mut(&family).expect("family exists");
        match f.kind {
            Kind::Untyped => return Err(at("sample of a family without TYPE".into())),
            Kind::Counter if sample.value.is_nan() || sample.value < 0.0 => {
                return Err(at("negative or NaN counter".into()));
            }
            Kind::Histogram
                if sample.name.ends_with("_bucket") && !sample.labels.contains_key("le") =>
            {
                return Err(at("bucket without le".into()));
            }
            _ => {}
        }
        f.samples.push(sample);
    }
    for f in families.values() {
        if f.kind == Kind::Histogram {
            check_histogram(f)?;
        }
    }
    Ok(families)
}

fn check_histogram(f: &Family) -> Result<(), String> {
    let mut groups: BTreeMap<Vec<(String, String)>, Vec<&Sample>> = BTreeMap::new();
    for s in &f.samples {
        let key = s
            .labels
            .iter()
            .filter(|(k, _)| *k != "le")
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        groups.entry(key).or_default().push(s);
    }
    for (labels, samples) in groups {
        let mut last_le = f64::NEG_INFINITY;
        let mut last_count = 0.0;
        let mut inf = None;
        let mut count = None;
        let mut sum = None;
        for s in samples {
            if s.name.ends_with("_bucket") {
                let le = parse_value(&s.labels["le"])
                    .map_err(|e| format!("{}: bucket le: {e}", f.name))?;
                if le <= last_le || s.value < last_count {
                    return Err(format!(
                        "{} {labels:?}: buckets out of order or decreasing",
                        f.name
                    ));
                }
                last_le = le;
                last_count = s.value;
                if le == f64::INFINITY {
                    inf = Some(s.value);
                }
            } else if s.name.ends_with("_count") {
                count = Some(s.value);
            } else if s.name.ends_with("_sum") {
                sum = Some(s.value);
            }
        }
        let (Some(inf), Some(count), Some(_)) = (inf, count, sum) else {
            return Err(format!(
                "{} {labels:?}: missing +Inf, _count or _sum",
                f.name
            ));
        };
        if inf != count {
            return Err(format!("{} {labels:?}: +Inf bucket != _count", f.name));
        }
    }
    Ok(())
}
