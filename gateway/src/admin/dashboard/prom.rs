//! A small, bounded parser of the Prometheus text exposition format (version 0.0.4), enough
//! for the dashboard: every sample line becomes a name, its labels and a value; `#` lines
//! (`HELP`, `TYPE`, comments) are skipped. Label values are unescaped (`\\`, `\"`, `\n`).
//!
//! Bounds: at most [`MAX_SAMPLES`] samples and [`MAX_LABELS`] labels per sample; the caller caps
//! the text's size. A malformed line is an error naming its line number, so a source serving
//! garbage shows as such instead of as partial numbers.

/// Most samples kept from one scrape.
pub(crate) const MAX_SAMPLES: usize = 50_000;
/// Most labels on one sample.
pub(crate) const MAX_LABELS: usize = 32;

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    /// Metric name, with any `_bucket`/`_sum`/`_count` suffix as written.
    pub(crate) name: String,
    /// Labels in the order written.
    pub(crate) labels: Vec<(String, String)>,
    /// The value (`NaN`, `+Inf` and `-Inf` included).
    pub(crate) value: f64,
}

impl Sample {
    /// The value of label `name`, if the sample has it.
    pub(crate) fn label(&self, name: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Parses a whole exposition. Errors read `line N: what was expected`.
pub(crate) fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if out.len() == MAX_SAMPLES {
            return Err(format!("more than {MAX_SAMPLES} samples"));
        }
        out.push(parse_line(line).map_err(|e| format!("line {}: {e}", i + 1))?);
    }
    Ok(out)
}

fn parse_line(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let name = &line[..name_end];
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("expected a metric name".into());
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        rest = parse_labels(after_brace, &mut labels)?;
    }
    let mut fields = rest.split_ascii_whitespace();
    let value = fields
        .next()
        .ok_or_else(|| format!("expected a value after {name}"))?;
    let value = parse_value(value)?;
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("expected a timestamp in milliseconds, found \"{timestamp}\""))?;
    }
    if fields.next().is_some() {
        return Err("unexpected text after the value and timestamp".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads `name="value",…}` and answers the text after the closing brace.
fn parse_labels<'a>(mut s: &'a str, labels: &mut Vec<(String, String)>) -> Result<&'a str, String> {
    loop {
        s = s.trim_start();
        if let Some(rest) = s.strip_prefix('}') {
            return Ok(rest);
        }
        if labels.len() == MAX_LABELS {
            return Err(format!("more than {MAX_LABELS} labels"));
        }
        let eq = s.find('=').ok_or("expected label=\"value\"")?;
        let key = s[..eq].trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!("invalid label name \"{key}\""));
        }
        let quoted = s[eq + 1..]
            .trim_start()
            .strip_prefix('"')
            .ok_or_else(|| format!("expected a quoted value for label {key}"))?;
        let (value, after) = unquote(quoted).ok_or("unterminated label value")?;
        labels.push((key.to_owned(), value));
        s = after.trim_start();
        if let Some(rest) = s.strip_prefix(',') {
            s = rest;
        } else if !s.starts_with('}') {
            return Err("expected ',' or '}' after a label".into());
        }
    }
}

/// The unescaped text up to the closing quote, and what follows the quote.
fn unquote(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                other => out.push(other),
            },
            c => out.push(c),
        }
    }
    None
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ => s
            .parse::<f64>()
            .ok()
            .filter(|v| v.is_finite())
            .ok_or_else(|| format!("expected a number, found \"{s}\"")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_with_and_without_labels() {
        let text = "# HELP x_total A counter.\n# TYPE x_total counter\n\
                    x_total{a=\"1\",b=\"two, \\\"quoted\\\" = }\"} 7\n\
                    up 1 1700000000000\n\
                    h_bucket{le=\"+Inf\",} 3\n\
                    g -Inf\n";
        let samples = parse(text).expect("parses");
        assert_eq!(samples.len(), 4);
        assert_eq!(samples[0].name, "x_total");
        assert_eq!(samples[0].label("a"), Some("1"));
        assert_eq!(samples[0].label("b"), Some("two, \"quoted\" = }"));
        assert_eq!(samples[0].value, 7.0);
        assert_eq!(samples[1].name, "up");
        assert!(samples[1].labels.is_empty());
        assert_eq!(samples[2].label("le"), Some("+Inf"));
        assert_eq!(samples[3].value, f64::NEG_INFINITY);
    }

    #[test]
    fn garbage_is_an_error_with_its_line() {
        let cases = [
            ("ok 1\n<html>\n", "line 2: expected a metric name"),
            ("x{a=1} 2\n", "line 1: expected a quoted value for label a"),
            ("x{a=\"1\" 2\n", "line 1: expected ',' or '}'"),
            ("x{a=\"1} 2\n", "line 1: unterminated label value"),
            ("x\n", "line 1: expected a value after x"),
            ("x abc\n", "line 1: expected a number, found \"abc\""),
            ("x 1 2 3\n", "line 1: unexpected text"),
            ("x 1 soon\n", "line 1: expected a timestamp"),
            ("x{a-b=\"1\"} 1\n", "line 1: invalid label name \"a-b\""),
        ];
        for (text, want) in cases {
            let err = parse(text).expect_err(text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn sample_and_label_counts_are_bounded() {
        let many = "x 1\n".repeat(MAX_SAMPLES + 1);
        assert!(parse(&many).expect_err("too many").contains("more than"));
        let labels: Vec<String> = (0..=MAX_LABELS).map(|i| format!("l{i}=\"v\"")).collect();
        let wide = format!("x{{{}}} 1\n", labels.join(","));
        assert!(parse(&wide).expect_err("too wide").contains("labels"));
    }
}
