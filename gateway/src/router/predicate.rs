//! The non-path predicates of a route: methods, headers and query parameters.

use http::{HeaderMap, HeaderName};
use regex::Regex;

use super::path::anchored_regex;
use super::query;
use crate::config::model::{RouteMatch, ValueMatch, ValuePredicate};

/// A compiled value test, shared by header and query predicates.
#[derive(Debug)]
enum ValueTest {
    Present,
    Absent,
    Exact(Box<str>),
    Regex(Regex),
}

impl ValueTest {
    fn compile(value: &ValuePredicate) -> Result<Self, String> {
        Ok(match value {
            ValuePredicate::Present => Self::Present,
            ValuePredicate::Absent => Self::Absent,
            ValuePredicate::Exact(v) => Self::Exact(v.as_str().into()),
            ValuePredicate::Regex(r) => Self::Regex(anchored_regex(r)?),
        })
    }
}

/// The methods, header and query predicates of one route. Every one must hold.
#[derive(Debug)]
pub(crate) struct Predicates {
    methods: Box<[Box<str>]>,
    headers: Box<[(HeaderName, ValueTest)]>,
    query: Box<[(Box<str>, ValueTest)]>,
}

impl Predicates {
    /// Compiles the predicates of `m`, reporting every invalid one.
    pub(crate) fn compile(m: &RouteMatch) -> Result<Self, Vec<String>> {
        let mut errors = Vec::new();
        let mut methods = Vec::with_capacity(m.methods.len());
        for method in &m.methods {
            match http::Method::from_bytes(method.as_bytes()) {
                Ok(_) => methods.push(method.as_str().into()),
                Err(_) => errors.push(format!("method `{method}` is not a valid method")),
            }
        }
        let mut headers = Vec::with_capacity(m.headers.len());
        for ValueMatch { name, value } in &m.headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("header `{name}` is not a valid header name"));
            match (name, ValueTest::compile(value)) {
                (Ok(n), Ok(t)) => headers.push((n, t)),
                (n, t) => errors.extend(n.err().into_iter().chain(t.err())),
            }
        }
        let mut query = Vec::with_capacity(m.query.len());
        for ValueMatch { name, value } in &m.query {
            match ValueTest::compile(value) {
                Ok(t) => query.push((name.as_str().into(), t)),
                Err(e) => errors.push(e),
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(Self {
            methods: methods.into(),
            headers: headers.into(),
            query: query.into(),
        })
    }

    /// How many predicates there are (a method list counts once), for priority.
    pub(crate) fn count(&self) -> usize {
        usize::from(!self.methods.is_empty()) + self.headers.len() + self.query.len()
    }

    /// True when every predicate holds for the request.
    pub(crate) fn matches(&self, method: &str, headers: &HeaderMap, query: Option<&str>) -> bool {
        (self.methods.is_empty() || self.methods.iter().any(|m| **m == *method))
            && self
                .headers
                .iter()
                .all(|(n, t)| header_holds(headers, n, t))
            && self
                .query
                .iter()
                .all(|(n, t)| query_holds(query.unwrap_or(""), n, t))
    }
}

fn header_holds(headers: &HeaderMap, name: &HeaderName, test: &ValueTest) -> bool {
    let mut values = headers.get_all(name).iter();
    match test {
        ValueTest::Present => values.next().is_some(),
        ValueTest::Absent => values.next().is_none(),
        ValueTest::Exact(v) => values.any(|h| h.as_bytes() == v.as_bytes()),
        ValueTest::Regex(r) => values.any(|h| h.to_str().is_ok_and(|s| r.is_match(s))),
    }
}

fn query_holds(query: &str, name: &str, test: &ValueTest) -> bool {
    let mut values = query::pairs(query)
        .filter(|(n, _)| query::decoded_eq(n, name))
        .map(|(_, v)| v);
    match test {
        ValueTest::Present => values.next().is_some(),
        ValueTest::Absent => values.next().is_none(),
        ValueTest::Exact(e) => values.any(|v| query::decoded_eq(v, e)),
        ValueTest::Regex(r) => values.any(|v| r.is_match(&query::decode(v))),
    }
}
