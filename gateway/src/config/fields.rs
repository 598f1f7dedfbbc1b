//! Table-like readers from [`Node`]s to typed values. Each reader reports what it found and
//! what it expected at the node's position, and returns `None` after reporting.

use std::time::Duration;

use super::error::Errors;
use super::model::{Position, Secret};
use super::units;
use super::yaml::{Entry, Kind, Node};

/// The keys of one mapping being read. Every key asked for is remembered, so [`Fields::finish`]
/// can report the keys nobody asked for as unknown, with a "did you mean" when one is close.
pub(crate) struct Fields<'n> {
    path: String,
    pos: Position,
    entries: &'n [Entry],
    used: Vec<bool>,
    known: Vec<&'static str>,
}

impl<'n> Fields<'n> {
    /// Opens `node` as a mapping (null reads as an empty one); reports anything else.
    pub(crate) fn open(node: &'n Node, path: &str, errs: &mut Errors) -> Option<Fields<'n>> {
        let entries: &'n [Entry] = match &node.kind {
            Kind::Map(entries) => entries,
            Kind::Null => &[],
            Kind::Invalid => return None,
            _ => {
                errs.add(
                    node.pos,
                    format!(
                        "{}: expected a mapping, found {}",
                        name(path),
                        node.describe()
                    ),
                );
                return None;
            }
        };
        Some(Fields {
            path: path.to_owned(),
            pos: node.pos,
            entries,
            used: vec![false; entries.len()],
            known: Vec::new(),
        })
    }

    /// Where the mapping starts.
    pub(crate) fn pos(&self) -> Position {
        self.pos
    }

    /// The path of `key` inside this mapping (`upstreams.api.balance`).
    pub(crate) fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of `key`, if present and not null; marks the key as known.
    pub(crate) fn take(&mut self, key: &'static str) -> Option<&'n Node> {
        self.known.push(key);
        let index = self.entries.iter().position(|e| e.key == key)?;
        self.used[index] = true;
        let value = &self.entries[index].value;
        (value.kind != Kind::Null).then_some(value)
    }

    /// Whether `key` is written with a non-null value; does not mark it as known.
    pub(crate) fn has(&self, key: &str) -> bool {
        self.entries
            .iter()
            .any(|e| e.key == key && e.value.kind != Kind::Null)
    }

    /// Reads optional `key` with `read`.
    pub(crate) fn get<T>(
        &mut self,
        key: &'static str,
        errs: &mut Errors,
        read: impl FnOnce(&'n Node, &str, &mut Errors) -> Option<T>,
    ) -> Option<T> {
        let node = self.take(key)?;
        read(node, &self.path_of(key), errs)
    }

    /// Reads optional `key` with `read`, or gives `default` when it is absent or invalid.
    pub(crate) fn get_or<T>(
        &mut self,
        key: &'static str,
        default: T,
        errs: &mut Errors,
        read: impl FnOnce(&'n Node, &str, &mut Errors) -> Option<T>,
    ) -> T {
        self.get(key, errs, read).unwrap_or(default)
    }

    /// Reads required `key` with `read`; reports it when missing.
    pub(crate) fn require<T>(
        &mut self,
        key: &'static str,
        errs: &mut Errors,
        read: impl FnOnce(&'n Node, &str, &mut Errors) -> Option<T>,
    ) -> Option<T> {
        let Some(node) = self.take(key) else {
            errs.add(
                self.pos,
                format!("{}: missing required key \"{key}\"", name(&self.path)),
            );
            return None;
        };
        read(node, &self.path_of(key), errs)
    }

    /// Reports every key that was never asked for.
    pub(crate) fn finish(self, errs: &mut Errors) {
        for (entry, used) in self.entries.iter().zip(&self.used) {
            if *used {
                continue;
            }
            let hint = did_you_mean(&entry.key, &self.known)
                .map(|k| format!("did you mean \"{k}\"? "))
                .unwrap_or_default();
            errs.add(
                entry.key_pos,
                format!(
                    "{}: unknown key; {hint}expected one of {}",
                    self.path_of(&entry.key),
                    self.known.join(", ")
                ),
            );
        }
    }
}

/// The path as shown in messages (the top level is "config").
fn name(path: &str) -> &str {
    if path.is_empty() {
        "config"
    } else {
        path
    }
}

/// The candidate closest to `word`, when it is close enough to be a likely typo.
pub(crate) fn did_you_mean<'a>(word: &str, candidates: &[&'a str]) -> Option<&'a str> {
    candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c)
}

/// A scalar's text (any scalar: numbers and booleans are read as their text).
pub(crate) fn text(node: &Node, path: &str, errs: &mut Errors) -> Option<String> {
    match &node.kind {
        Kind::Scalar { text, .. } => Some(text.clone()),
        Kind::Invalid => None,
        _ => {
            errs.add(
                node.pos,
                format!("{path}: expected a string, found {}", node.describe()),
            );
            None
        }
    }
}

/// A non-empty scalar's text.
pub(crate) fn non_empty(node: &Node, path: &str, errs: &mut Errors) -> Option<String> {
    parsed(node, path, errs, |s| {
        if s.is_empty() {
            Err("expected a non-empty string".to_owned())
        } else {
            Ok(s.to_owned())
        }
    })
}

/// A scalar's text converted by `parse`; its error message is reported after the path.
pub(crate) fn parsed<T>(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let raw = text(node, path, errs)?;
    match parse(&raw) {
        Ok(value) => Some(value),
        Err(message) => {
            errs.add(node.pos, format!("{path}: {message}"));
            None
        }
    }
}

/// A secret string (non-empty), kept as [`Secret`] so it never prints.
pub(crate) fn secret(node: &Node, path: &str, errs: &mut Errors) -> Option<Secret> {
    match &node.kind {
        Kind::Scalar { text, .. } if text.is_empty() => {
            errs.add(node.pos, format!("{path}: expected a non-empty secret"));
            None
        }
        Kind::Scalar { text, .. } => Some(Secret(text.clone())),
        Kind::Invalid => None,
        // Never echo what was found: it may be the secret.
        _ => {
            errs.add(node.pos, format!("{path}: expected a string"));
            None
        }
    }
}

/// `true` or `false`, unquoted.
pub(crate) fn boolean(node: &Node, path: &str, errs: &mut Errors) -> Option<bool> {
    if let Kind::Scalar { text, plain: true } = &node.kind {
        match text.as_str() {
            "true" | "True" | "TRUE" => return Some(true),
            "false" | "False" | "FALSE" => return Some(false),
            _ => {}
        }
    }
    if node.kind != Kind::Invalid {
        errs.add(
            node.pos,
            format!("{path}: expected true or false, found {}", node.describe()),
        );
    }
    None
}

/// A whole number in `min..=max`.
pub(crate) fn number<T: TryFrom<u64>>(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    min: u64,
    max: u64,
) -> Option<T> {
    parsed(node, path, errs, |s| {
        s.parse::<u64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .and_then(|n| T::try_from(n).ok())
            .ok_or_else(|| format!("expected a whole number from {min} to {max}, found \"{s}\""))
    })
}

/// A number (decimals allowed) in `min..=max`.
pub(crate) fn float(node: &Node, path: &str, errs: &mut Errors, min: f64, max: f64) -> Option<f64> {
    parsed(node, path, errs, |s| {
        s.parse::<f64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| format!("expected a number from {min} to {max}, found \"{s}\""))
    })
}

/// A duration (`250ms`, `2s`).
pub(crate) fn duration(node: &Node, path: &str, errs: &mut Errors) -> Option<Duration> {
    parsed(node, path, errs, units::parse_duration)
}

/// A duration from `range.0` to `range.1` (whole milliseconds and seconds in the message).
pub(crate) fn duration_within(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    range: (Duration, Duration),
) -> Option<Duration> {
    parsed(node, path, errs, |s| {
        let d = units::parse_duration(s)?;
        let (min, max) = range;
        if (min..=max).contains(&d) {
            Ok(d)
        } else {
            Err(format!(
                "expected a duration from {}ms to {}s, found \"{s}\"",
                min.as_millis(),
                max.as_secs()
            ))
        }
    })
}

/// A duration longer than zero.
pub(crate) fn positive_duration(node: &Node, path: &str, errs: &mut Errors) -> Option<Duration> {
    parsed(node, path, errs, |s| {
        let d = units::parse_duration(s)?;
        if d.is_zero() {
            Err("expected a duration longer than zero".to_owned())
        } else {
            Ok(d)
        }
    })
}

/// A size in bytes (`64KiB`).
pub(crate) fn size(node: &Node, path: &str, errs: &mut Errors) -> Option<u64> {
    parsed(node, path, errs, units::parse_size)
}

/// A size in bytes that fits `usize` and is at least 1.
pub(crate) fn size_usize(node: &Node, path: &str, errs: &mut Errors) -> Option<usize> {
    parsed(node, path, errs, |s| {
        let bytes = units::parse_size(s)?;
        match usize::try_from(bytes) {
            Ok(0) => Err("expected a size of at least 1 byte".to_owned()),
            Ok(n) => Ok(n),
            Err(_) => Err(format!("\"{s}\" is too large")),
        }
    })
}

/// A percentage (`20%` or `20`).
pub(crate) fn percent(node: &Node, path: &str, errs: &mut Errors) -> Option<u8> {
    parsed(node, path, errs, units::parse_percent)
}

/// One of `options` by name.
pub(crate) fn choice<T: Clone>(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    options: &[(&str, T)],
) -> Option<T> {
    parsed(node, path, errs, |s| {
        if let Some((_, value)) = options.iter().find(|(name, _)| *name == s) {
            return Ok(value.clone());
        }
        let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
        let hint = did_you_mean(s, &names)
            .map(|n| format!(" (did you mean \"{n}\"?)"))
            .unwrap_or_default();
        Err(format!(
            "unknown value \"{s}\"; expected one of {}{hint}",
            names.join(", ")
        ))
    })
}

/// The items of a list.
pub(crate) fn list<'n>(node: &'n Node, path: &str, errs: &mut Errors) -> Option<&'n [Node]> {
    match &node.kind {
        Kind::Seq(items) => Some(items),
        Kind::Invalid => None,
        _ => {
            errs.add(
                node.pos,
                format!("{path}: expected a list, found {}", node.describe()),
            );
            None
        }
    }
}

/// The items of a list, or the node itself when it is a single scalar.
pub(crate) fn one_or_many(node: &Node) -> &[Node] {
    match &node.kind {
        Kind::Seq(items) => items,
        _ => std::slice::from_ref(node),
    }
}

/// The entries of a free-form mapping (names chosen by the user, like header names).
pub(crate) fn entries<'n>(node: &'n Node, path: &str, errs: &mut Errors) -> Option<&'n [Entry]> {
    match &node.kind {
        Kind::Map(entries) => Some(entries),
        Kind::Invalid => None,
        _ => {
            errs.add(
                node.pos,
                format!("{path}: expected a mapping, found {}", node.describe()),
            );
            None
        }
    }
}

/// Reads each item of a list with `read`, keeping the valid ones.
pub(crate) fn list_of<'n, T>(
    node: &'n Node,
    path: &str,
    errs: &mut Errors,
    mut read: impl FnMut(&'n Node, &str, &mut Errors) -> Option<T>,
) -> Option<Vec<T>> {
    let items = list(node, path, errs)?;
    Some(
        items
            .iter()
            .enumerate()
            .filter_map(|(i, item)| read(item, &format!("{path}[{i}]"), errs))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::yaml::parse;

    fn node(text: &str) -> Node {
        let mut errs = Errors::new("t.yaml");
        let node = parse(text, &|_| None, &mut errs).expect("parses");
        assert!(errs.is_empty());
        node
    }

    #[test]
    fn unknown_keys_get_a_suggestion() {
        let doc = node("balance: x\nballance: y\nzzz: 1\n");
        let mut errs = Errors::new("t.yaml");
        let mut f = Fields::open(&doc, "upstreams.api", &mut errs).expect("map");
        assert!(f.take("balance").is_some());
        assert!(f.take("targets").is_none());
        f.finish(&mut errs);
        let out = errs.finish().to_string();
        assert!(
            out.contains(
                "t.yaml:2:1: upstreams.api.ballance: unknown key; did you mean \"balance\"?"
            ),
            "{out}"
        );
        assert!(
            out.contains(
                "t.yaml:3:1: upstreams.api.zzz: unknown key; expected one of balance, targets"
            ),
            "{out}"
        );
    }

    #[test]
    fn scalar_readers_report_what_they_found() {
        let doc = node("[yes, '3', 0, 2s, fastest, 1.5]");
        let Kind::Seq(items) = &doc.kind else {
            panic!("seq")
        };
        let mut errs = Errors::new("t.yaml");
        assert_eq!(boolean(&items[0], "a", &mut errs), None);
        assert_eq!(number::<u32>(&items[1], "b", &mut errs, 1, 5), Some(3));
        assert_eq!(number::<u32>(&items[2], "c", &mut errs, 1, 5), None);
        assert_eq!(
            duration(&items[3], "d", &mut errs),
            Some(Duration::from_secs(2))
        );
        let opts = [("round_robin", 1), ("least_conn", 2)];
        assert_eq!(choice(&items[4], "e", &mut errs, &opts), None);
        assert_eq!(float(&items[5], "f", &mut errs, 0.0, 1.0), None);
        let out = errs.finish().to_string();
        assert!(
            out.contains("a: expected true or false, found \"yes\""),
            "{out}"
        );
        assert!(
            out.contains("c: expected a whole number from 1 to 5, found \"0\""),
            "{out}"
        );
        assert!(
            out.contains("e: unknown value \"fastest\"; expected one of round_robin, least_conn"),
            "{out}"
        );
        assert!(out.contains("f: expected a number from 0 to 1"), "{out}");
    }
}
