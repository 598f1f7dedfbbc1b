//! Path rewrites applied after a match: a template filled from the captures, or the route's
//! prefix replaced.

use super::table::Matched;
use crate::config::model::{PathMatch, Rewrite, Route};

/// A piece of a rewrite template.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// Copied as it is.
    Literal(&'a str),
    /// Replaced by the capture of this name (`{name}` or `{*name}`).
    Capture(&'a str),
}

/// Splits a rewrite template into pieces. An unclosed `{` is an error.
pub(crate) fn pieces(template: &str) -> impl Iterator<Item = Result<Piece<'_>, String>> {
    let mut rest = template;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some(open) = rest.find('{') else {
            let literal = rest;
            rest = "";
            return Some(Ok(Piece::Literal(literal)));
        };
        if open > 0 {
            let literal = &rest[..open];
            rest = &rest[open..];
            return Some(Ok(Piece::Literal(literal)));
        }
        let Some(close) = rest.find('}') else {
            rest = "";
            return Some(Err(format!("rewrite `{template}`: unclosed `{{`")));
        };
        let inner = &rest[1..close];
        rest = &rest[close + 1..];
        Some(Ok(Piece::Capture(inner.strip_prefix('*').unwrap_or(inner))))
    })
}

/// Applies `rewrite` to the normalised `path` that `route` matched with `matched`.
///
/// [`Rewrite::Path`]: the template with `{name}` / `{*name}` replaced by captures (the router
/// checks at compile time that every name is captured by the route).
/// [`Rewrite::StripPrefix`]: the route's prefix is replaced by the given string, with exactly one
/// `/` at the join; a non-prefix route (refused by the router) leaves the path as it is.
pub fn apply(rewrite: &Rewrite, matched: &Matched<'_>, route: &Route, path: &str) -> String {
    match rewrite {
        Rewrite::Path(template) => {
            let mut out = String::with_capacity(template.len() + path.len());
            for piece in pieces(template) {
                match piece {
                    Ok(Piece::Literal(l)) => out.push_str(l),
                    Ok(Piece::Capture(name)) => {
                        out.push_str(matched.captures.get(name).unwrap_or(""));
                    }
                    Err(_) => break,
                }
            }
            out
        }
        Rewrite::StripPrefix(replacement) => match &route.matcher.path {
            PathMatch::Prefix(prefix) => {
                let prefix = prefix.trim_end_matches('/');
                match path.strip_prefix(prefix) {
                    Some(rest) => join(replacement, rest),
                    None => path.to_owned(),
                }
            }
            _ => path.to_owned(),
        },
    }
}

/// `head` + `tail` (which is empty or starts with `/`) with one slash between them, never empty.
fn join(head: &str, tail: &str) -> String {
    let head = head.strip_suffix('/').unwrap_or(head);
    let mut out = String::with_capacity(head.len() + tail.len() + 1);
    out.push_str(head);
    if tail.is_empty() {
        if head.is_empty() {
            out.push('/');
        }
    } else {
        out.push_str(tail);
    }
    if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}
