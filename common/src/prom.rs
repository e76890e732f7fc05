//! A parser for the Prometheus text exposition format, version 0.0.4.
//!
//! Follows the format as specified (and as the reference Go parser in
//! `prometheus/common/expfmt` reads it):
//!
//! - lines end with `\n`; blank lines and `#` comments other than `HELP` and
//!   `TYPE` are ignored; tokens are separated by spaces or tabs, and leading
//!   blanks on a line are allowed;
//! - metric names match `[a-zA-Z_:][a-zA-Z0-9_:]*`, label names
//!   `[a-zA-Z_][a-zA-Z0-9_]*` (`__name__` is reserved, duplicates rejected);
//! - label sets may be empty (`{}`), may end with a comma, and may contain
//!   blanks around names, `=`, values and commas;
//! - label values decode `\\`, `\"` and `\n`; an unknown escape such as `\w` is
//!   kept verbatim, as the Prometheus server keeps it; `}`, `,` and `=` inside
//!   quotes are ordinary characters;
//! - values are Go floats (`1`, `-1.5e-3`, `+Inf`, `-Inf`, `NaN`), followed by
//!   an optional integer timestamp in milliseconds;
//! - `HELP` text decodes `\\` and `\n`; `TYPE` is one of counter, gauge,
//!   histogram, summary, untyped.
//!
//! Anything else is an error naming the 1-based line, so a broken scrape is
//! reported instead of silently losing series. Names and unescaped label
//! values borrow from the input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

/// The declared type of a metric family (`# TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MetricType {
    Counter,
    Gauge,
    Histogram,
    Summary,
    Untyped,
}

impl MetricType {
    fn parse(token: &str) -> Option<Self> {
        // expfmt compares case-insensitively; so do we.
        [
            ("counter", MetricType::Counter),
            ("gauge", MetricType::Gauge),
            ("histogram", MetricType::Histogram),
            ("summary", MetricType::Summary),
            ("untyped", MetricType::Untyped),
        ]
        .into_iter()
        .find(|(name, _)| token.eq_ignore_ascii_case(name))
        .map(|(_, t)| t)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            MetricType::Counter => "counter",
            MetricType::Gauge => "gauge",
            MetricType::Histogram => "histogram",
            MetricType::Summary => "summary",
            MetricType::Untyped => "untyped",
        }
    }
}

impl fmt::Display for MetricType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A metric family announced by `# HELP` and/or `# TYPE` lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Family<'a> {
    pub name: &'a str,
    /// `Untyped` when only a HELP line was given.
    pub metric_type: MetricType,
    pub help: Option<Cow<'a, str>>,
}

/// One sample line.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample<'a> {
    pub name: &'a str,
    /// In input order; names are unique within a sample.
    pub labels: Vec<(&'a str, Cow<'a, str>)>,
    pub value: f64,
    pub timestamp_ms: Option<i64>,
}

impl Sample<'_> {
    /// The value of label `name`, if present.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_ref())
    }
}

/// A parsed exposition: every sample in input order, and every family that
/// had a HELP or TYPE line, in order of first mention.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Exposition<'a> {
    pub samples: Vec<Sample<'a>>,
    pub families: Vec<Family<'a>>,
}

impl<'a> Exposition<'a> {
    /// The family announced under exactly this name.
    pub fn family(&self, name: &str) -> Option<&Family<'a>> {
        self.families.iter().find(|f| f.name == name)
    }

    /// The family a sample name belongs to: its own name, or for histogram and
    /// summary families the base name of `_bucket`, `_sum` and `_count` series.
    pub fn family_of(&self, sample_name: &str) -> Option<&Family<'a>> {
        if let Some(f) = self.family(sample_name) {
            return Some(f);
        }
        for (suffix, types) in [
            ("_bucket", &[MetricType::Histogram][..]),
            ("_sum", &[MetricType::Histogram, MetricType::Summary][..]),
            ("_count", &[MetricType::Histogram, MetricType::Summary][..]),
        ] {
            if let Some(base) = sample_name.strip_suffix(suffix)
                && let Some(f) = self.family(base)
                && types.contains(&f.metric_type)
            {
                return Some(f);
            }
        }
        None
    }

    /// Samples with exactly this name.
    pub fn samples_named<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Sample<'a>> + 's {
        self.samples.iter().filter(move |s| s.name == name)
    }
}

/// A line that is not valid exposition format.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ParseError {
    /// 1-based line number.
    pub line: usize,
    pub message: String,
}

/// Parses a whole exposition.
pub fn parse(text: &str) -> Result<Exposition<'_>, ParseError> {
    let mut parser = Parser {
        out: Exposition::default(),
        family_index: HashMap::new(),
    };
    for (index, line) in text.split('\n').enumerate() {
        parser.line(line).map_err(|message| ParseError {
            line: index + 1,
            message,
        })?;
    }
    Ok(parser.out)
}

struct Parser<'a> {
    out: Exposition<'a>,
    family_index: HashMap<&'a str, usize>,
}

/// A position within one line. All delimiters are ASCII, so byte offsets
/// found by scanning for them are always character boundaries.
struct Cursor<'a> {
    line: &'a str,
    pos: usize,
}

fn is_blank(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

fn is_name_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b == b':'
}

fn is_name_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b':'
}

fn is_label_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_label_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Shortens offending input for error messages.
fn excerpt(s: &str) -> String {
    const MAX: usize = 40;
    if s.len() <= MAX {
        return format!("{s:?}");
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{:?}…", &s[..end])
}

impl<'a> Cursor<'a> {
    fn peek(&self) -> Option<u8> {
        self.line.as_bytes().get(self.pos).copied()
    }

    fn at_end(&self) -> bool {
        self.pos >= self.line.len()
    }

    fn rest(&self) -> &'a str {
        &self.line[self.pos..]
    }

    fn skip_blanks(&mut self) {
        while self.peek().is_some_and(is_blank) {
            self.pos += 1;
        }
    }

    fn take_while(&mut self, pred: impl Fn(u8) -> bool) -> &'a str {
        let start = self.pos;
        while self.peek().is_some_and(&pred) {
            self.pos += 1;
        }
        &self.line[start..self.pos]
    }

    fn token(&mut self) -> &'a str {
        self.take_while(|b| !is_blank(b))
    }

    fn metric_name(&mut self) -> Option<&'a str> {
        if !self.peek().is_some_and(is_name_start) {
            return None;
        }
        Some(self.take_while(is_name_char))
    }

    fn expect(&mut self, want: u8, what: &str) -> Result<(), String> {
        if self.peek() == Some(want) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected {what}, found {}", excerpt(self.rest())))
        }
    }

    /// After the opening quote: the value up to the closing quote.
    fn label_value(&mut self) -> Result<Cow<'a, str>, String> {
        let bytes = self.line.as_bytes();
        let start = self.pos;
        let Some(stop) = bytes[start..].iter().position(|&b| b == b'"' || b == b'\\') else {
            return Err("unterminated label value".to_owned());
        };
        if bytes[start + stop] == b'"' {
            self.pos = start + stop + 1;
            return Ok(Cow::Borrowed(&self.line[start..start + stop]));
        }
        let mut value = String::with_capacity(stop + 16);
        let mut i = start;
        loop {
            let Some(off) = bytes[i..].iter().position(|&b| b == b'"' || b == b'\\') else {
                return Err("unterminated label value".to_owned());
            };
            value.push_str(&self.line[i..i + off]);
            i += off;
            if bytes[i] == b'"' {
                self.pos = i + 1;
                return Ok(Cow::Owned(value));
            }
            match bytes.get(i + 1) {
                Some(b'\\') => value.push('\\'),
                Some(b'"') => value.push('"'),
                Some(b'n') => value.push('\n'),
                Some(_) => {
                    // Unknown escape: keep the backslash; the next character is
                    // copied as ordinary text below.
                    value.push('\\');
                    i += 1;
                    continue;
                }
                None => return Err("unterminated label value".to_owned()),
            }
            i += 2;
        }
    }
}

fn decode_help(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('\\') => out.push('\\'),
            Some('n') => out.push('\n'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    Cow::Owned(out)
}

impl<'a> Parser<'a> {
    fn line(&mut self, line: &'a str) -> Result<(), String> {
        let mut cur = Cursor { line, pos: 0 };
        cur.skip_blanks();
        match cur.peek() {
            None => Ok(()),
            Some(b'#') => {
                cur.pos += 1;
                self.comment(cur)
            }
            Some(_) => self.sample(cur),
        }
    }

    fn family_mut(&mut self, name: &'a str) -> &mut Family<'a> {
        let families = &mut self.out.families;
        let index = *self.family_index.entry(name).or_insert_with(|| {
            families.push(Family {
                name,
                metric_type: MetricType::Untyped,
                help: None,
            });
            families.len() - 1
        });
        &mut families[index]
    }

    fn comment(&mut self, mut cur: Cursor<'a>) -> Result<(), String> {
        cur.skip_blanks();
        let keyword = cur.token();
        if keyword != "HELP" && keyword != "TYPE" {
            return Ok(()); // an ordinary comment
        }
        cur.skip_blanks();
        let name_start = cur.pos;
        let name = cur.metric_name().ok_or_else(|| {
            format!(
                "{keyword}: expected metric name, found {}",
                excerpt(cur.rest())
            )
        })?;
        if !cur.at_end() && !cur.peek().is_some_and(is_blank) {
            return Err(format!(
                "{keyword}: invalid metric name {}",
                excerpt(&cur.line[name_start..])
            ));
        }
        cur.skip_blanks();
        if keyword == "HELP" {
            let help = decode_help(cur.rest());
            // Only one HELP per name is allowed; like the Prometheus server we
            // keep the first rather than fail the scrape.
            let family = self.family_mut(name);
            if family.help.is_none() {
                family.help = Some(help);
            }
            return Ok(());
        }
        let type_token = cur.token();
        cur.skip_blanks();
        if !cur.at_end() {
            return Err(format!(
                "TYPE {name}: unexpected text {}",
                excerpt(cur.rest())
            ));
        }
        let metric_type = MetricType::parse(type_token)
            .ok_or_else(|| format!("TYPE {name}: unknown metric type {}", excerpt(type_token)))?;
        let family = self.family_mut(name);
        family.metric_type = metric_type;
        Ok(())
    }

    fn sample(&mut self, mut cur: Cursor<'a>) -> Result<(), String> {
        let name = cur
            .metric_name()
            .ok_or_else(|| format!("expected metric name, found {}", excerpt(cur.rest())))?;
        let name_end = cur.pos;
        cur.skip_blanks();
        let mut labels = Vec::new();
        if cur.peek() == Some(b'{') {
            cur.pos += 1;
            self.labels(&mut cur, &mut labels)?;
            cur.skip_blanks();
        } else if cur.pos == name_end && !cur.at_end() {
            return Err(format!(
                "invalid character after metric name {name:?}: {}",
                excerpt(cur.rest())
            ));
        }
        let value_token = cur.token();
        if value_token.is_empty() {
            return Err(format!("{name}: missing value"));
        }
        let value = parse_float(value_token)
            .ok_or_else(|| format!("{name}: invalid value {}", excerpt(value_token)))?;
        cur.skip_blanks();
        let timestamp_ms = if cur.at_end() {
            None
        } else {
            let token = cur.token();
            let ts = token
                .parse::<i64>()
                .map_err(|_| format!("{name}: invalid timestamp {}", excerpt(token)))?;
            cur.skip_blanks();
            if !cur.at_end() {
                return Err(format!(
                    "{name}: unexpected text after timestamp: {}",
                    excerpt(cur.rest())
                ));
            }
            Some(ts)
        };
        self.out.samples.push(Sample {
            name,
            labels,
            value,
            timestamp_ms,
        });
        Ok(())
    }

    /// After `{`: label pairs up to and including `}`.
    fn labels(
        &mut self,
        cur: &mut Cursor<'a>,
        labels: &mut Vec<(&'a str, Cow<'a, str>)>,
    ) -> Result<(), String> {
        loop {
            cur.skip_blanks();
            if cur.peek() == Some(b'}') {
                cur.pos += 1;
                return Ok(());
            }
            if !cur.peek().is_some_and(is_label_start) {
                return Err(format!(
                    "expected label name or '}}', found {}",
                    excerpt(cur.rest())
                ));
            }
            let label = cur.take_while(is_label_char);
            if label == "__name__" {
                return Err("label name \"__name__\" is reserved".to_owned());
            }
            if labels.iter().any(|(n, _)| *n == label) {
                return Err(format!("duplicate label {label:?}"));
            }
            cur.skip_blanks();
            cur.expect(b'=', &format!("'=' after label name {label:?}"))?;
            cur.skip_blanks();
            cur.expect(b'"', &format!("'\"' to open the value of label {label:?}"))?;
            let value = cur.label_value()?;
            labels.push((label, value));
            cur.skip_blanks();
            match cur.peek() {
                Some(b',') => cur.pos += 1,
                Some(b'}') => {
                    cur.pos += 1;
                    return Ok(());
                }
                _ => {
                    return Err(format!(
                        "expected ',' or '}}' after label {label:?}, found {}",
                        excerpt(cur.rest())
                    ));
                }
            }
        }
    }
}

/// Go's `strconv.ParseFloat` for the forms exporters write. Rust's parser
/// already accepts `inf`, `+Inf`, `-Inf`, `NaN` and exponents case-insensitively.
fn parse_float(token: &str) -> Option<f64> {
    token.parse::<f64>().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_sample_borrows_everything() {
        let e = parse("foo{a=\"b\"} 1.5 123\n").unwrap();
        assert_eq!(e.samples.len(), 1);
        let s = &e.samples[0];
        assert_eq!(s.name, "foo");
        assert!(matches!(s.labels[0].1, Cow::Borrowed("b")));
        assert_eq!(s.value, 1.5);
        assert_eq!(s.timestamp_ms, Some(123));
        assert_eq!(s.label("a"), Some("b"));
        assert_eq!(s.label("missing"), None);
    }

    #[test]
    fn escaped_values_are_owned_and_decoded() {
        let e = parse(r#"foo{a="x\"y\\z\nw"} 1"#).unwrap();
        let v = &e.samples[0].labels[0].1;
        assert!(matches!(v, Cow::Owned(_)));
        assert_eq!(v, "x\"y\\z\nw");
    }

    #[test]
    fn family_of_resolves_histogram_and_summary_series() {
        let e = parse(
            "# TYPE h histogram\nh_bucket{le=\"1\"} 1\nh_sum 1\nh_count 1\n# TYPE s summary\ns_sum 1\n# TYPE c counter\nc_count 1\n",
        )
        .unwrap();
        assert_eq!(e.family_of("h_bucket").unwrap().name, "h");
        assert_eq!(
            e.family_of("h_count").unwrap().metric_type,
            MetricType::Histogram
        );
        assert_eq!(e.family_of("s_sum").unwrap().name, "s");
        assert!(e.family_of("s_bucket").is_none());
        assert!(
            e.family_of("c_count").is_none(),
            "counters have no _count series"
        );
        assert_eq!(e.samples_named("h_sum").count(), 1);
    }
}
