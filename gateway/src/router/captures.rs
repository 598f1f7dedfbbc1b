//! Values captured while matching a path: template parameters and regex named groups.

use smallvec::SmallVec;

/// Captured `(name, value)` pairs, in the order they appear in the route's path pattern.
///
/// Names borrow from the compiled router, values from the request path; up to four pairs are
/// stored inline, so matching does not allocate.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captures<'a> {
    pairs: SmallVec<[(&'a str, &'a str); 4]>,
}

impl<'a> Captures<'a> {
    /// The value captured under `name`.
    pub fn get(&self, name: &str) -> Option<&'a str> {
        self.pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    /// All `(name, value)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, &'a str)> + '_ {
        self.pairs.iter().copied()
    }

    /// Number of captured values.
    pub fn len(&self) -> usize {
        self.pairs.len()
    }

    /// True when nothing was captured.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }

    pub(crate) fn push(&mut self, name: &'a str, value: &'a str) {
        self.pairs.push((name, value));
    }

    pub(crate) fn clear(&mut self) {
        self.pairs.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_finds_by_name() {
        let mut c = Captures::default();
        assert!(c.is_empty());
        c.push("id", "42");
        c.push("rest", "a/b");
        assert_eq!(c.get("id"), Some("42"));
        assert_eq!(c.get("rest"), Some("a/b"));
        assert_eq!(c.get("nope"), None);
        assert_eq!(c.len(), 2);
        assert_eq!(
            c.iter().collect::<Vec<_>>(),
            [("id", "42"), ("rest", "a/b")]
        );
        c.clear();
        assert!(c.is_empty());
    }
}
