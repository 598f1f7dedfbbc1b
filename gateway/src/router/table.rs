//! The compiled routing table and its index.

use std::collections::HashMap;

use foldhash::fast::RandomState;

use http::HeaderMap;

use super::captures::Captures;
use super::compile::CompiledRoute;
use super::host::{wildcard_suffixes, HostPattern};
use super::path::{first_segment, IndexKey};
use crate::config::model::Route;

/// What the router looks at in a request.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// Host, lower-case, without port (a trailing dot is ignored).
    pub host: &'a str,
    /// The normalised path (see [`super::normalize::normalize_path`]), without query.
    pub path: &'a str,
    /// The request method.
    pub method: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The raw query string, without `?`.
    pub query: Option<&'a str>,
}

/// The route a request matched.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matched<'a> {
    /// Index of the route in config order.
    pub route: usize,
    /// Values captured by the path predicate.
    pub captures: Captures<'a>,
}

/// The index maps: keys come from config only, so a fast (not DoS-hardened) hash is fine.
type Index<V> = HashMap<Box<str>, V, RandomState>;

/// A route in a priority-ordered candidate list: `rank` is its position in the bucket's order.
#[derive(Debug, Clone, Copy)]
struct Slot {
    rank: usize,
    route: usize,
}

/// The routes of one host pattern (or of "any host"), indexed by path.
#[derive(Debug, Default)]
struct Bucket {
    /// Exact-path routes by path, in priority order.
    exact: Index<Vec<usize>>,
    /// Template, prefix and regex routes by their literal first segment, in priority order.
    by_segment: Index<Vec<Slot>>,
    /// Routes without a literal first segment (prefix `/`, templates starting with a capture,
    /// most regexes), in priority order.
    unindexed: Vec<Slot>,
}

impl Bucket {
    /// Builds the bucket of `ids` (indices into `routes`).
    fn build(mut ids: Vec<usize>, routes: &[CompiledRoute]) -> Self {
        ids.sort_by_key(|&id| routes[id].priority(id));
        ids.dedup();
        let mut bucket = Self::default();
        for (rank, &route) in ids.iter().enumerate() {
            let slot = Slot { rank, route };
            match routes[route].path.index_key() {
                IndexKey::Exact(p) => bucket.exact.entry(p.into()).or_default().push(route),
                IndexKey::FirstSegment(s) => {
                    bucket.by_segment.entry(s.into()).or_default().push(slot);
                }
                IndexKey::Unindexed => bucket.unindexed.push(slot),
            }
        }
        bucket
    }
}

/// The compiled routing table. Immutable; build a new one on reload.
#[derive(Debug)]
pub struct Router {
    routes: Vec<CompiledRoute>,
    exact_hosts: Index<Bucket>,
    wildcard_hosts: Index<Bucket>,
    any_host: Bucket,
}

impl Router {
    /// Compiles `routes` (in config order). On failure, every problem found is returned with
    /// the index of the route it belongs to.
    pub fn new(routes: &[Route]) -> Result<Router, Vec<(usize, String)>> {
        let mut compiled = Vec::with_capacity(routes.len());
        let mut errors = Vec::new();
        for (i, route) in routes.iter().enumerate() {
            match CompiledRoute::compile(route) {
                Ok(c) => compiled.push(c),
                Err(e) => errors.extend(e.into_iter().map(|e| (i, e))),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        let mut exact: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut wildcard: HashMap<Box<str>, Vec<usize>> = HashMap::new();
        let mut any = Vec::new();
        for (id, route) in compiled.iter().enumerate() {
            if route.hosts.is_empty() {
                any.push(id);
            }
            for host in &route.hosts {
                let (map, name) = match host {
                    HostPattern::Exact(n) => (&mut exact, n),
                    HostPattern::Wildcard(n) => (&mut wildcard, n),
                };
                map.entry(name.clone()).or_default().push(id);
            }
        }
        let build = |map: HashMap<Box<str>, Vec<usize>>| {
            map.into_iter()
                .map(|(k, ids)| (k, Bucket::build(ids, &compiled)))
                .collect()
        };
        Ok(Router {
            exact_hosts: build(exact),
            wildcard_hosts: build(wildcard),
            any_host: Bucket::build(any, &compiled),
            routes: compiled,
        })
    }

    /// Finds the route for a request: the first candidate, in priority order (see the module
    /// documentation), whose every predicate holds.
    pub fn route<'a>(&'a self, req: &RequestView<'a>) -> Option<Matched<'a>> {
        let host = req.host.strip_suffix('.').unwrap_or(req.host);
        if !self.exact_hosts.is_empty() {
            if let Some(m) = self
                .exact_hosts
                .get(host)
                .and_then(|b| self.in_bucket(b, req))
            {
                return Some(m);
            }
        }
        if !self.wildcard_hosts.is_empty() {
            for suffix in wildcard_suffixes(host) {
                if let Some(m) = self
                    .wildcard_hosts
                    .get(suffix)
                    .and_then(|b| self.in_bucket(b, req))
                {
                    return Some(m);
                }
            }
        }
        self.in_bucket(&self.any_host, req)
    }

    fn in_bucket<'a>(&'a self, bucket: &Bucket, req: &RequestView<'a>) -> Option<Matched<'a>> {
        let mut captures = Captures::default();
        if !bucket.exact.is_empty() {
            for &id in bucket.exact.get(req.path).into_iter().flatten() {
                if self.try_route(id, req, &mut captures) {
                    return Some(Matched {
                        route: id,
                        captures,
                    });
                }
            }
        }
        let indexed: &[Slot] = if bucket.by_segment.is_empty() {
            &[]
        } else {
            bucket
                .by_segment
                .get(first_segment(req.path))
                .map_or(&[], Vec::as_slice)
        };
        let (mut a, mut b) = (
            indexed.iter().peekable(),
            bucket.unindexed.iter().peekable(),
        );
        loop {
            let slot = match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.rank < y.rank => a.next(),
                (Some(_), None) => a.next(),
                (_, Some(_)) => b.next(),
                (None, None) => return None,
            }?;
            if self.try_route(slot.route, req, &mut captures) {
                return Some(Matched {
                    route: slot.route,
                    captures,
                });
            }
        }
    }

    /// Tests route `id` against the request, leaving its captures in `captures` on a match.
    fn try_route<'a>(
        &'a self,
        id: usize,
        req: &RequestView<'a>,
        captures: &mut Captures<'a>,
    ) -> bool {
        let route = &self.routes[id];
        captures.clear();
        route.path.matches(req.path, captures)
            && route.predicates.matches(req.method, req.headers, req.query)
    }
}
