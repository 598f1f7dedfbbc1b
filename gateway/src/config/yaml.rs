//! YAML text → a small positioned tree ([`Node`]) that the field readers walk.
//!
//! Scalars keep their source text (after `${ENV}` substitution) and whether they were plain or
//! quoted; each reader then interprets the text as the type it expects. Keys are never
//! substituted.

use saphyr::{MarkedYaml, ScalarStyle, YamlData, YamlLoader};
use saphyr_parser::{Marker, Parser};

use super::env::substitute;
use super::error::Errors;
use super::model::Position;

/// Deepest nesting accepted (the config shape needs far fewer levels).
const MAX_DEPTH: usize = 64;

/// A node of the document with the position it starts at.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Node {
    /// Where the node starts.
    pub(crate) pos: Position,
    /// What it is.
    pub(crate) kind: Kind,
}

/// The kinds of node.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// `~`, `null` or nothing.
    Null,
    /// A scalar's text; `plain` is false for quoted scalars (always strings).
    Scalar {
        /// The text after substitution.
        text: String,
        /// Written without quotes.
        plain: bool,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in document order.
    Map(Vec<Entry>),
    /// A node already reported as an error; readers skip it silently.
    Invalid,
}

/// One `key: value` of a mapping.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry {
    /// The key's text.
    pub(crate) key: String,
    /// Where the key is.
    pub(crate) key_pos: Position,
    /// The value.
    pub(crate) value: Node,
}

impl Node {
    /// Describes the node for "found ..." messages.
    pub(crate) fn describe(&self) -> String {
        match &self.kind {
            Kind::Null => "nothing (null)".to_owned(),
            Kind::Scalar { text, .. } => format!("\"{}\"", shorten(text)),
            Kind::Seq(_) => "a list".to_owned(),
            Kind::Map(_) => "a mapping".to_owned(),
            Kind::Invalid => "an invalid value".to_owned(),
        }
    }
}

/// Shortens long text for messages.
fn shorten(text: &str) -> String {
    const MAX: usize = 60;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Converts a saphyr marker (1-based line, 0-based column) to a 1-based position. saphyr marks
/// the end of a text that does not end with a line break on the line after the last one (a
/// syntax error there, an empty key or value at the very end); such a mark is reported at
/// `end`, where the text ends.
fn position(mark: Marker, end: Position) -> Position {
    if mark.line() > end.line {
        return end;
    }
    Position {
        line: mark.line(),
        column: mark.col() + 1,
    }
}

/// Where `text` ends, just after its last character. Lines end at LF, CRLF or a lone CR, as
/// YAML counts them.
fn end_position(text: &str) -> Position {
    let (mut line, mut column) = (1, 1);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\r' => {
                chars.next_if_eq(&'\n');
                (line, column) = (line + 1, 1);
            }
            '\n' => (line, column) = (line + 1, 1),
            _ => column += 1,
        }
    }
    Position { line, column }
}

/// Parses `text` as one YAML document. Syntax errors and failed substitutions are recorded in
/// `errs`; `None` means the document could not be parsed at all.
pub(crate) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
) -> Option<Node> {
    let mut loader: YamlLoader<'_, MarkedYaml<'_>> = YamlLoader::default();
    loader.early_parse(false);
    let mut parser = Parser::new_from_str(text);
    let scan = parser.load(&mut loader, true);
    let end = end_position(text);
    if let Some(e) = scan.err().or_else(|| loader.error().cloned()) {
        errs.add(
            position(*e.marker(), end),
            format!("YAML syntax error: {}", e.info()),
        );
        return None;
    }
    let mut docs = loader.into_documents();
    if docs.len() > 1 {
        errs.add(
            position(docs[1].span.start, end),
            "a second YAML document; expected exactly one document per config file",
        );
        return None;
    }
    let Some(doc) = docs.pop() else {
        return Some(Node {
            pos: Position { line: 1, column: 1 },
            kind: Kind::Null,
        });
    };
    Some(convert(&doc, env, errs, end, 0))
}

fn convert(
    node: &MarkedYaml<'_>,
    env: &dyn Fn(&str) -> Option<String>,
    errs: &mut Errors,
    end: Position,
    depth: usize,
) -> Node {
    let pos = position(node.span.start, end);
    let invalid = Node {
        pos,
        kind: Kind::Invalid,
    };
    if depth > MAX_DEPTH {
        errs.add(pos, format!("nesting deeper than {MAX_DEPTH} levels"));
        return invalid;
    }
    let kind = match &node.data {
        YamlData::Representation(text, style, tag) => {
            let mut plain = *style == ScalarStyle::Plain;
            if let Some(tag) = tag {
                if tag.is_yaml_core_schema() && tag.suffix == "str" {
                    plain = false;
                } else {
                    errs.add(
                        pos,
                        format!("YAML tag \"{tag}\" is not supported (only !!str is)"),
                    );
                    return invalid;
                }
            }
            if plain && matches!(text.as_ref(), "" | "~" | "null" | "Null" | "NULL") {
                Kind::Null
            } else {
                match substitute(text, env) {
                    Ok(text) => Kind::Scalar { text, plain },
                    Err(message) => {
                        errs.add(pos, message);
                        return invalid;
                    }
                }
            }
        }
        YamlData::Sequence(items) => Kind::Seq(
            items
                .iter()
                .map(|item| convert(item, env, errs, end, depth + 1))
                .collect(),
        ),
        YamlData::Mapping(map) => {
            let mut entries: Vec<Entry> = Vec::with_capacity(map.len());
            for (key, value) in map {
                let key_pos = position(key.span.start, end);
                let YamlData::Representation(key_text, _, None) = &key.data else {
                    errs.add(key_pos, "mapping keys must be plain strings");
                    continue;
                };
                if entries.iter().any(|e| e.key == *key_text) {
                    errs.add(key_pos, format!("duplicate key \"{key_text}\""));
                    continue;
                }
                entries.push(Entry {
                    key: key_text.to_string(),
                    key_pos,
                    value: convert(value, env, errs, end, depth + 1),
                });
            }
            Kind::Map(entries)
        }
        YamlData::Tagged(tag, _) => {
            errs.add(pos, format!("YAML tag \"{tag}\" is not supported here"));
            return invalid;
        }
        YamlData::Value(_) | YamlData::Alias(_) | YamlData::BadValue => {
            // Representation is the only scalar form with early parsing off; the loader resolves
            // aliases itself and BadValue marks an empty document or an unknown alias.
            if depth == 0 {
                Kind::Null
            } else {
                errs.add(pos, "unresolvable YAML node (unknown alias?)");
                return invalid;
            }
        }
    };
    Node { pos, kind }
}

/// Converts a node to JSON, resolving plain scalars by the YAML core schema, and records where
/// each nested value was written by its path (`limits[0].rate`, as `serde_path_to_error`
/// prints paths).
pub(crate) fn to_json(
    node: &Node,
    path: &str,
    fields: &mut std::collections::HashMap<String, Position>,
) -> serde_json::Value {
    use serde_json::Value;
    match &node.kind {
        Kind::Null | Kind::Invalid => Value::Null,
        Kind::Scalar { text, plain: false } => Value::String(text.clone()),
        Kind::Scalar { text, plain: true } => match text.as_str() {
            "true" | "True" | "TRUE" => Value::Bool(true),
            "false" | "False" | "FALSE" => Value::Bool(false),
            t => t
                .parse::<i64>()
                .ok()
                .map(Value::from)
                .or_else(|| {
                    saphyr::parse_core_schema_fp(t)
                        .and_then(serde_json::Number::from_f64)
                        .map(Value::Number)
                })
                .unwrap_or_else(|| Value::String(text.clone())),
        },
        Kind::Seq(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let p = format!("{path}[{i}]");
                    fields.insert(p.clone(), item.pos);
                    to_json(item, &p, fields)
                })
                .collect(),
        ),
        Kind::Map(entries) => Value::Object(
            entries
                .iter()
                .map(|e| {
                    let p = if path.is_empty() {
                        e.key.clone()
                    } else {
                        format!("{path}.{}", e.key)
                    };
                    fields.insert(p.clone(), e.key_pos);
                    (e.key.clone(), to_json(&e.value, &p, fields))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn parse_ok(text: &str) -> Node {
        let mut errs = Errors::new("t.yaml");
        let node = parse(text, &no_env, &mut errs).expect("parses");
        assert!(errs.is_empty(), "{}", errs.finish());
        node
    }

    fn parse_err(text: &str) -> String {
        let mut errs = Errors::new("t.yaml");
        let _ = parse(text, &no_env, &mut errs);
        errs.finish().to_string()
    }

    #[test]
    fn keeps_positions_and_scalar_styles() {
        let node = parse_ok("a: 1\nb:\n  - 'x'\n  - ~\n");
        let Kind::Map(entries) = node.kind else {
            panic!("not a map")
        };
        assert_eq!(entries[0].key, "a");
        assert_eq!(entries[0].value.pos, Position { line: 1, column: 4 });
        let Kind::Seq(items) = &entries[1].value.kind else {
            panic!("not a seq")
        };
        assert_eq!(
            items[0].kind,
            Kind::Scalar {
                text: "x".to_owned(),
                plain: false
            }
        );
        assert_eq!(items[0].pos, Position { line: 3, column: 5 });
        assert_eq!(items[1].kind, Kind::Null);
    }

    #[test]
    fn empty_document_is_null() {
        assert_eq!(parse_ok("").kind, Kind::Null);
        assert_eq!(parse_ok("# only a comment\n").kind, Kind::Null);
    }

    #[test]
    fn reports_syntax_errors_with_position() {
        let out = parse_err("a: 1\nb: [1, 2\n");
        assert!(out.starts_with("t.yaml:"), "{out}");
        assert!(out.contains("YAML syntax error"), "{out}");
        assert!(parse_err("a: 1\na: 2\n").contains("duplicate"));
        assert!(parse_err("a: 1\n'a': 2\n").contains("t.yaml:2:1: duplicate key"));
        assert!(parse_err("a: 1\n---\nb: 2\n").contains("second YAML document"));
        assert!(parse_err("a: !custom 1\n").contains("not supported"));
        assert!(parse_err("a: ${NOPE}\n").contains("t.yaml:1:4: environment variable NOPE"));
    }

    /// An error at the end of a text without a final line break is on its last line, not on a
    /// line after it (found by the `config` fuzz target).
    #[test]
    fn a_syntax_error_at_the_end_is_on_the_last_line() {
        let cases = [
            ("a: [1, 2", "t.yaml:1:9:"),
            ("server:\n  threads: 2\n  upgrade_sock", "t.yaml:3:15:"),
            ("a: 1\r\nb: [1", "t.yaml:2:6:"),
            ("a: 1\rb: [1", "t.yaml:2:6:"),
            ("a: [1, 2\n", "t.yaml:2:1:"),
        ];
        for (text, at) in cases {
            let out = parse_err(text);
            assert!(out.starts_with(at), "{text:?}: {out}");
        }
        // An empty complex key at the very end is where the text ends, too (an unknown key
        // error names its position).
        let Kind::Map(entries) = parse_ok("? ").kind else {
            panic!("a mapping");
        };
        assert_eq!(entries[0].key_pos, Position { line: 1, column: 3 });
    }
}
