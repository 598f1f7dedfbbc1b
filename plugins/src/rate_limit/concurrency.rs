//! `concurrency`: at most N requests in flight per key, released when the request ends.

use std::sync::Arc;

use dashmap::mapref::entry::Entry;
use dashmap::DashMap;

/// In-flight request counts per key. Only keys with requests in flight are held, so the table
/// is bounded by the number of requests in flight.
pub struct InFlight {
    counts: DashMap<String, u32>,
    max: u32,
}

/// One request's slot; dropping it (when the request's context is dropped: at its end, on an
/// error or when the client goes away) frees the slot.
pub struct Slot {
    table: Arc<InFlight>,
    key: String,
}

impl InFlight {
    /// A table allowing `max` (at least 1) requests in flight per key.
    pub fn new(max: u32) -> Arc<InFlight> {
        Arc::new(InFlight {
            counts: DashMap::new(),
            max,
        })
    }

    /// The configured maximum.
    pub fn max(&self) -> u32 {
        self.max
    }

    /// Takes a slot for `key`, or `None` when `max` requests with that key are in flight.
    pub fn acquire(self: &Arc<Self>, key: &str) -> Option<Slot> {
        match self.counts.entry(key.to_string()) {
            Entry::Occupied(mut e) => {
                if *e.get() >= self.max {
                    return None;
                }
                *e.get_mut() += 1;
            }
            Entry::Vacant(e) => {
                e.insert(1);
            }
        }
        Some(Slot {
            table: self.clone(),
            key: key.to_string(),
        })
    }

    /// Requests in flight under `key`.
    #[cfg(test)]
    fn in_flight(&self, key: &str) -> u32 {
        self.counts.get(key).map_or(0, |c| *c)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Entry::Occupied(mut e) = self.table.counts.entry(std::mem::take(&mut self.key)) {
            if *e.get() <= 1 {
                e.remove();
            } else {
                *e.get_mut() -= 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_per_key_and_frees_on_drop() {
        let t = InFlight::new(2);
        let a1 = t.acquire("a").unwrap();
        let a2 = t.acquire("a").unwrap();
        assert!(t.acquire("a").is_none());
        let b = t.acquire("b").unwrap();
        assert_eq!((t.in_flight("a"), t.in_flight("b")), (2, 1));
        drop(a1);
        let a3 = t.acquire("a").unwrap();
        drop((a2, a3, b));
        assert_eq!(t.counts.len(), 0, "idle keys are not kept");
    }
}
