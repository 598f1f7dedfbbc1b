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

#[cfg(test)]
mod tests {
    use http::HeaderMap;

    use super::*;
    use crate::router::table_tests::route;
    use crate::router::{RequestView, Router};

    /// (path predicate, rewrite, request path, rewritten path)
    fn cases() -> Vec<(PathMatch, Rewrite, &'static str, &'static str)> {
        let t = |s: &str| PathMatch::Template(s.to_owned());
        let p = |s: &str| PathMatch::Prefix(s.to_owned());
        let to = |s: &str| Rewrite::Path(s.to_owned());
        let strip = |s: &str| Rewrite::StripPrefix(s.to_owned());
        vec![
            (
                t("/v1/urls/{code}"),
                to("/urls/{code}"),
                "/v1/urls/abc",
                "/urls/abc",
            ),
            (
                t("/static/{*rest}"),
                to("/assets/{rest}"),
                "/static/a/b.css",
                "/assets/a/b.css",
            ),
            (
                t("/static/{*rest}"),
                to("/assets/{*rest}"),
                "/static",
                "/assets/",
            ),
            (
                t("/{t}/x/{id}"),
                to("/x/{id}/{t}"),
                "/acme/x/9",
                "/x/9/acme",
            ),
            (t("/{a}/{b}"), to("/{b}/{a}"), "/one/two", "/two/one"),
            (
                PathMatch::Regex(r"/u/(?P<id>\d+)".to_owned()),
                to("/users/{id}"),
                "/u/42",
                "/users/42",
            ),
            (p("/api"), strip("/"), "/api/v1/x", "/v1/x"),
            (p("/api/"), strip(""), "/api/v1", "/v1"),
            (p("/api"), strip(""), "/api", "/"),
            (p("/api"), strip("/internal"), "/api/x", "/internal/x"),
            (p("/api"), strip("/internal/"), "/api/x", "/internal/x"),
            (p("/api"), strip("/internal"), "/api", "/internal"),
            (p("/api"), strip("internal"), "/api/", "/internal/"),
            (p("/"), strip("/base"), "/x/y", "/base/x/y"),
        ]
    }

    #[test]
    fn rewrites() {
        let headers = HeaderMap::new();
        for (path, rewrite, request, want) in cases() {
            let mut r = route("r", &[], path);
            r.rewrite = Some(rewrite.clone());
            let router = Router::new(std::slice::from_ref(&r)).expect("route compiles");
            let req = RequestView {
                host: "h",
                path: request,
                method: "GET",
                headers: &headers,
                query: None,
            };
            let matched = router.route(&req).expect("request matches");
            assert_eq!(
                apply(&rewrite, &matched, &r, request),
                want,
                "{rewrite:?} on {request}"
            );
        }
    }

    #[test]
    fn template_pieces() {
        let got: Vec<_> = pieces("/a/{x}/{*rest}.json").collect();
        assert_eq!(
            got,
            [
                Ok(Piece::Literal("/a/")),
                Ok(Piece::Capture("x")),
                Ok(Piece::Literal("/")),
                Ok(Piece::Capture("rest")),
                Ok(Piece::Literal(".json")),
            ]
        );
        assert!(pieces("/a/{x").any(|p| p.is_err()));
    }
}
