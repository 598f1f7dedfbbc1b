//! Compiled path predicates: exact, template, prefix (at a segment boundary) and regex.

use regex::Regex;

use super::captures::Captures;
use super::normalize::normalize_path;
use crate::config::model::{EncodedSlash, PathMatch};

/// A path predicate compiled for matching against normalised paths.
#[derive(Debug)]
pub(crate) enum PathMatcher {
    /// The path equals this.
    Exact(Box<str>),
    /// A template of literal and `{name}` segments, optionally ending in `{*name}`.
    Template(Template),
    /// The path is this prefix (trailing slashes removed), or starts with it followed by `/`.
    /// Empty: every path.
    Prefix(Box<str>),
    /// An anchored regex.
    Regex {
        /// The anchored expression.
        regex: Regex,
        /// It has at least one named group (to capture).
        named: bool,
        /// The literal first segment every match has, when the pattern shows one.
        first: Option<Box<str>>,
    },
}

/// Where a path predicate is filed in the router's index.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum IndexKey<'a> {
    /// Only this exact path matches.
    Exact(&'a str),
    /// Every matching path has this first segment.
    FirstSegment(&'a str),
    /// Any path may match.
    Unindexed,
}

/// A parsed path template.
#[derive(Debug)]
pub(crate) struct Template {
    segments: Box<[Segment]>,
    catch_all: Option<Box<str>>,
}

#[derive(Debug)]
enum Segment {
    Literal(Box<str>),
    Param(Box<str>),
}

/// How a path predicate ranks: kind first (lower wins), then specificity (higher wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum PathKind {
    Exact,
    Template,
    Prefix,
    Regex,
}

/// Compiles an anchored regular expression (the whole value must match).
pub(crate) fn anchored_regex(pattern: &str) -> Result<Regex, String> {
    Regex::new(&format!("^(?:{pattern})$")).map_err(|e| format!("regex `{pattern}`: {e}"))
}

/// Checks that a literal path from config is in the form requests are normalised to;
/// otherwise the route could never match.
fn check_normal(path: &str) -> Result<(), String> {
    match normalize_path(path, EncodedSlash::Keep) {
        Ok(n) if n == path => Ok(()),
        Ok(n) => Err(format!(
            "path `{path}` is not normalised (it would be `{n}`)"
        )),
        Err(e) => Err(format!("path `{path}`: {}", e.reason())),
    }
}

impl PathMatcher {
    /// Compiles a path predicate from config.
    pub(crate) fn compile(path: &PathMatch) -> Result<Self, String> {
        match path {
            PathMatch::Exact(p) => check_normal(p).map(|()| Self::Exact(p.as_str().into())),
            PathMatch::Prefix(p) => {
                check_normal(p)?;
                Ok(Self::Prefix(p.trim_end_matches('/').into()))
            }
            PathMatch::Template(t) => {
                check_normal(t)?;
                Template::parse(t).map(Self::Template)
            }
            PathMatch::Regex(r) => {
                let regex = anchored_regex(r)?;
                let named = regex.capture_names().flatten().next().is_some();
                let first = regex_first_segment(r).map(Into::into);
                Ok(Self::Regex {
                    regex,
                    named,
                    first,
                })
            }
        }
    }

    /// Kind, for priority.
    pub(crate) fn kind(&self) -> PathKind {
        match self {
            Self::Exact(_) => PathKind::Exact,
            Self::Template(_) => PathKind::Template,
            Self::Prefix(_) => PathKind::Prefix,
            Self::Regex { .. } => PathKind::Regex,
        }
    }

    /// Specificity within the kind (higher first): a template's literal segments (a template
    /// without `{*rest}` wins a tie), a prefix's length.
    pub(crate) fn specificity(&self) -> usize {
        match self {
            Self::Template(t) => {
                let literals = t
                    .segments
                    .iter()
                    .filter(|s| matches!(s, Segment::Literal(_)))
                    .count();
                literals * 2 + usize::from(t.catch_all.is_none())
            }
            Self::Prefix(p) => p.len(),
            Self::Exact(_) | Self::Regex { .. } => 0,
        }
    }

    /// Where the router's index files this predicate.
    pub(crate) fn index_key(&self) -> IndexKey<'_> {
        match self {
            Self::Exact(p) => IndexKey::Exact(p),
            Self::Template(t) => match t.segments.first() {
                Some(Segment::Literal(l)) => IndexKey::FirstSegment(l),
                _ => IndexKey::Unindexed,
            },
            Self::Prefix(p) if !p.is_empty() => IndexKey::FirstSegment(first_segment(p)),
            Self::Regex {
                first: Some(first), ..
            } => IndexKey::FirstSegment(first),
            Self::Prefix(_) | Self::Regex { .. } => IndexKey::Unindexed,
        }
    }

    /// True when a match can capture a value under `name`.
    pub(crate) fn captures_name(&self, name: &str) -> bool {
        match self {
            Self::Template(t) => {
                t.catch_all.as_deref() == Some(name)
                    || t.segments
                        .iter()
                        .any(|s| matches!(s, Segment::Param(p) if &**p == name))
            }
            Self::Regex { regex, .. } => regex.capture_names().flatten().any(|n| n == name),
            Self::Exact(_) | Self::Prefix(_) => false,
        }
    }

    /// Matches a normalised path, pushing captured values onto `caps`. On a miss `caps` may hold
    /// partial captures; the caller clears it.
    pub(crate) fn matches<'a>(&'a self, path: &'a str, caps: &mut Captures<'a>) -> bool {
        match self {
            Self::Exact(p) => **p == *path,
            Self::Prefix(p) => {
                path.starts_with(&**p)
                    && (path.len() == p.len() || path.as_bytes()[p.len()] == b'/')
            }
            Self::Template(t) => t.matches(path, caps),
            Self::Regex {
                regex,
                named: false,
                ..
            } => regex.is_match(path),
            Self::Regex {
                regex, named: true, ..
            } => {
                // `is_match` first: it does not allocate, `captures` does.
                if !regex.is_match(path) {
                    return false;
                }
                let Some(found) = regex.captures(path) else {
                    return false;
                };
                for (i, name) in regex.capture_names().enumerate() {
                    if let (Some(name), Some(m)) = (name, found.get(i)) {
                        caps.push(name, m.as_str());
                    }
                }
                true
            }
        }
    }
}

/// The literal first segment of every path a regex pattern matches, when that is plain to see:
/// the pattern starts with `/name` followed by its end or by a `/` that no quantifier follows,
/// and has no alternation anywhere.
fn regex_first_segment(pattern: &str) -> Option<&str> {
    if pattern.contains('|') {
        return None;
    }
    let rest = pattern.strip_prefix('/')?;
    let end = rest
        .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '~')))
        .unwrap_or(rest.len());
    let (segment, after) = rest.split_at(end);
    let plain_end = after.is_empty()
        || after
            .strip_prefix('/')
            .is_some_and(|a| !a.starts_with(['?', '*', '+', '{']));
    (!segment.is_empty() && plain_end).then_some(segment)
}

/// The first segment of a path (`/a/b` → `a`, `/` → ``).
pub(crate) fn first_segment(path: &str) -> &str {
    let rest = path.strip_prefix('/').unwrap_or(path);
    rest.split_once('/').map_or(rest, |(first, _)| first)
}

impl Template {
    fn parse(template: &str) -> Result<Self, String> {
        let body = template
            .strip_prefix('/')
            .ok_or_else(|| format!("template `{template}` does not start with '/'"))?;
        let mut segments = Vec::new();
        let mut catch_all = None;
        let mut names: Vec<&str> = Vec::new();
        let mut parts = body.split('/').peekable();
        while let Some(part) = parts.next() {
            if !part.contains(['{', '}']) {
                segments.push(Segment::Literal(part.into()));
                continue;
            }
            let inner = part
                .strip_prefix('{')
                .and_then(|p| p.strip_suffix('}'))
                .ok_or_else(|| {
                    format!("template `{template}`: `{part}` must be a whole segment")
                })?;
            let (rest, name) = match inner.strip_prefix('*') {
                Some(name) => (true, name),
                None => (false, inner),
            };
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err(format!(
                    "template `{template}`: bad capture name in `{part}`"
                ));
            }
            if names.contains(&name) {
                return Err(format!(
                    "template `{template}`: capture `{name}` appears twice"
                ));
            }
            names.push(name);
            if rest {
                if parts.peek().is_some() {
                    return Err(format!("template `{template}`: `{part}` must be last"));
                }
                catch_all = Some(name.into());
            } else {
                segments.push(Segment::Param(name.into()));
            }
        }
        Ok(Self {
            segments: segments.into(),
            catch_all,
        })
    }

    fn matches<'a>(&'a self, path: &'a str, caps: &mut Captures<'a>) -> bool {
        let mut rest = path.strip_prefix('/');
        for segment in self.segments.iter() {
            let Some(current) = rest else {
                return false;
            };
            let (seg, next) = match current.split_once('/') {
                Some((seg, next)) => (seg, Some(next)),
                None => (current, None),
            };
            match segment {
                Segment::Literal(l) if **l == *seg => {}
                Segment::Param(name) if !seg.is_empty() => caps.push(name, seg),
                _ => return false,
            }
            rest = next;
        }
        match &self.catch_all {
            Some(name) => {
                caps.push(name, rest.unwrap_or(""));
                true
            }
            None => rest.is_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matcher(p: PathMatch) -> PathMatcher {
        PathMatcher::compile(&p).expect("valid path predicate")
    }

    fn run<'a>(m: &'a PathMatcher, path: &'a str) -> Option<Vec<(&'a str, &'a str)>> {
        let mut caps = Captures::default();
        m.matches(path, &mut caps).then(|| caps.iter().collect())
    }

    #[test]
    fn template_segments_and_rest() {
        let m = matcher(PathMatch::Template("/v1/urls/{code}".into()));
        assert_eq!(run(&m, "/v1/urls/abc"), Some(vec![("code", "abc")]));
        assert_eq!(run(&m, "/v1/urls/"), None);
        assert_eq!(run(&m, "/v1/urls/abc/"), None);
        assert_eq!(run(&m, "/v1/urls"), None);
        let m = matcher(PathMatch::Template("/static/{*rest}".into()));
        assert_eq!(run(&m, "/static/a/b.css"), Some(vec![("rest", "a/b.css")]));
        assert_eq!(run(&m, "/static/"), Some(vec![("rest", "")]));
        assert_eq!(run(&m, "/static"), Some(vec![("rest", "")]));
        assert_eq!(run(&m, "/staticx"), None);
        let m = matcher(PathMatch::Template("/".into()));
        assert_eq!(run(&m, "/"), Some(vec![]));
        assert_eq!(run(&m, "/a"), None);
    }

    #[test]
    fn prefix_is_segment_bounded() {
        let m = matcher(PathMatch::Prefix("/api/".into()));
        assert!(run(&m, "/api").is_some());
        assert!(run(&m, "/api/").is_some());
        assert!(run(&m, "/api/x/y").is_some());
        assert!(run(&m, "/apix").is_none());
        let root = matcher(PathMatch::Prefix("/".into()));
        assert!(run(&root, "/anything").is_some());
        assert_eq!(root.index_key(), IndexKey::Unindexed);
        assert_eq!(m.index_key(), IndexKey::FirstSegment("api"));
    }

    #[test]
    fn regex_is_anchored_and_captures_named_groups() {
        let m = matcher(PathMatch::Regex(r"/u/(?P<id>\d+)(/.*)?".into()));
        assert_eq!(run(&m, "/u/42"), Some(vec![("id", "42")]));
        assert_eq!(run(&m, "/u/42/x"), Some(vec![("id", "42")]));
        assert_eq!(run(&m, "/x/u/42"), None);
        assert!(m.captures_name("id"));
        assert!(!m.captures_name("other"));
    }

    #[test]
    fn regex_first_segment_only_when_certain() {
        let cases = [
            (r"/u/(?P<id>\d+)", Some("u")),
            ("/api", Some("api")),
            (r"/re-3_~/\d+", Some("re-3_~")),
            ("/u/?x", None),
            ("/u/*", None),
            ("/ab?/x", None),
            ("/a/x|/b/y", None),
            ("/(a)/x", None),
            ("(?i)/a/x", None),
            (r"/a\d/x", None),
            ("/.*", None),
            ("//x", None),
        ];
        for (pattern, want) in cases {
            assert_eq!(regex_first_segment(pattern), want, "{pattern}");
        }
    }

    #[test]
    fn specificity_orders_templates() {
        let two = matcher(PathMatch::Template("/a/b/{x}".into()));
        let one = matcher(PathMatch::Template("/a/{x}/{y}".into()));
        let one_rest = matcher(PathMatch::Template("/a/{x}/{*y}".into()));
        assert!(two.specificity() > one.specificity());
        assert!(one.specificity() > one_rest.specificity());
    }

    #[test]
    fn rejects_bad_patterns() {
        for bad in [
            PathMatch::Template("/a/{*rest}/b".into()),
            PathMatch::Template("/a/x{id}".into()),
            PathMatch::Template("/a/{}".into()),
            PathMatch::Template("/{id}/{id}".into()),
            PathMatch::Template("a/{id}".into()),
            PathMatch::Exact("/a/../b".into()),
            PathMatch::Exact("relative".into()),
            PathMatch::Prefix("//a".into()),
            PathMatch::Regex("(".into()),
        ] {
            assert!(PathMatcher::compile(&bad).is_err(), "{bad:?} accepted");
        }
    }
}
