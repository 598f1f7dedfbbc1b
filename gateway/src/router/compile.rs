//! Compiling one config route into what the router matches with, and its priority.

use std::cmp::Reverse;

use super::host::HostPattern;
use super::path::{PathKind, PathMatcher};
use super::predicate::Predicates;
use super::rewrite::{pieces, Piece};
use crate::config::model::{PathMatch, Rewrite, Route};

/// A route ready for matching.
#[derive(Debug)]
pub(crate) struct CompiledRoute {
    /// Host patterns; empty means any host.
    pub(crate) hosts: Vec<HostPattern>,
    /// The path predicate.
    pub(crate) path: PathMatcher,
    /// Methods, headers, query.
    pub(crate) predicates: Predicates,
}

/// Order of routes within one host bucket: smaller first (see the module doc of `router`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Priority {
    kind: PathKind,
    specificity: Reverse<usize>,
    predicates: Reverse<usize>,
    order: usize,
}

impl CompiledRoute {
    /// Compiles `route`, reporting every problem found.
    pub(crate) fn compile(route: &Route) -> Result<Self, Vec<String>> {
        let m = &route.matcher;
        let mut errors = Vec::new();
        let hosts: Vec<HostPattern> = m
            .hosts
            .iter()
            .filter_map(|h| HostPattern::parse(h).map_err(|e| errors.push(e)).ok())
            .collect();
        let path = PathMatcher::compile(&m.path)
            .map_err(|e| errors.push(e))
            .ok();
        let predicates = Predicates::compile(m).map_err(|e| errors.extend(e)).ok();
        if let (Some(path), Some(rewrite)) = (&path, &route.rewrite) {
            errors.extend(check_rewrite(rewrite, path, &m.path));
        }
        match (path, predicates) {
            (Some(path), Some(predicates)) if errors.is_empty() => Ok(Self {
                hosts,
                path,
                predicates,
            }),
            _ => Err(errors),
        }
    }

    /// This route's priority, `order` being its index in config.
    pub(crate) fn priority(&self, order: usize) -> Priority {
        Priority {
            kind: self.path.kind(),
            specificity: Reverse(self.path.specificity()),
            predicates: Reverse(self.predicates.count()),
            order,
        }
    }
}

/// Problems with a rewrite: a relative template, unknown capture names, a prefix strip on a
/// non-prefix route.
fn check_rewrite(rewrite: &Rewrite, path: &PathMatcher, raw: &PathMatch) -> Vec<String> {
    match rewrite {
        Rewrite::Path(template) if !template.starts_with('/') => {
            vec![format!("rewrite `{template}` does not start with '/'")]
        }
        Rewrite::Path(template) => pieces(template)
            .filter_map(|piece| match piece {
                Ok(Piece::Capture(name)) if !path.captures_name(name) => Some(format!(
                    "rewrite `{template}` uses `{{{name}}}` which the path does not capture"
                )),
                Ok(_) => None,
                Err(e) => Some(e),
            })
            .collect(),
        Rewrite::StripPrefix(_) if !matches!(raw, PathMatch::Prefix(_)) => {
            vec!["strip_prefix needs a prefix path".to_owned()]
        }
        Rewrite::StripPrefix(_) => Vec::new(),
    }
}
