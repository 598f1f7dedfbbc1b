//! Routing: which route takes a request, and what its path becomes.
//!
//! The proxy first normalises the path ([`normalize::normalize_path`]), then asks the compiled
//! [`Router`] for a match, then applies the route's [`rewrite`] and, for a split upstream, picks
//! a pool with [`split::WeightedSplit`].
//!
//! # Predicates
//! - **Host**: `api.example.com` matches that name exactly (the caller lower-cases the request
//!   host and strips its port; a trailing dot is ignored). `*.example.com` matches any name
//!   with one or more labels before `example.com`, not `example.com` itself. No hosts: any host.
//! - **Path** (on the normalised path): *exact*; *template* (`/v1/urls/{code}`: `{name}`
//!   captures one non-empty segment, `{*name}` as the last segment captures the rest, possibly
//!   empty, so `/static/{*rest}` matches `/static` too); *prefix* at a segment boundary
//!   (`/api` and `/api/` both match `/api`, `/api/` and `/api/x`, never `/apix`); *regex*,
//!   anchored at both ends, whose named groups are captures.
//! - **Methods**: any of the listed ones. **Headers**: present / absent / exact value / regex
//!   (anchored) on any of the header's values. **Query**: the same on `name=value` pairs after
//!   percent-decoding (`+` is a space).
//!
//! # Priority
//! A request is tried against candidates in this order, and the first whose every predicate
//! holds wins; a route whose host matches but whose other predicates fail falls through to
//! the next candidate:
//! 1. host specificity: exact host, then wildcards with more labels (`*.a.example.com`), then
//!    shorter wildcards (`*.example.com`), then routes for any host;
//! 2. path kind: exact, then templates (more literal segments first; on a tie, one without
//!    `{*rest}` first), then prefixes (longer first), then regexes;
//! 3. more method/header/query predicates first (a method list counts as one);
//! 4. config order.
//!
//! # Cost
//! Hosts are found by hash lookups (the exact name, then each of its suffixes for wildcards);
//! within a host, exact paths by a hash lookup and the other routes through a table keyed by
//! their literal first path segment (a regex has one when it plainly starts with `/name/` and
//! has no `|`), merged with the few routes that cannot be keyed (prefix `/`, templates starting
//! with a capture, other regexes). Matching does not allocate unless a regex with named groups
//! matches or more than four values are captured.

mod captures;
mod compile;
mod host;
pub mod normalize;
mod path;
mod predicate;
mod query;
pub mod rewrite;
pub mod split;
mod table;

pub use captures::Captures;
pub use normalize::{normalize_path, PathError};
pub use table::{Matched, RequestView, Router};

#[cfg(test)]
pub(crate) mod table_tests;
