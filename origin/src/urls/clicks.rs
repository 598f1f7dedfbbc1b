//! Click counting: each redirect bumps an in-memory counter (sharded, each lock held for one
//! map update); [`Clicks::flush`] moves every pending count to the store in one transaction.
//!
//! Counts leave memory only when the store has committed them: a batch being written (or
//! one the store refused) stays in a `flushing` map that readers add in, so
//! [`Clicks::read_with_pending`] never misses or double-counts a click, and a failed batch
//! is retried with the next one. The number of distinct codes held (pending + flushing) is
//! capped; at half the cap a flush is asked for early, at the cap clicks on further codes are
//! dropped and counted in `urls_clicks_dropped_total`.

use std::collections::hash_map::{Entry, RandomState};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::metrics::Metrics;
use super::store::{StoreError, UrlStore};

/// Shards of the pending map (redirects on different codes rarely share a lock).
const SHARDS: usize = 32;

/// A flushing map that grew past this many codes is shrunk once written.
const KEEP_CAPACITY: usize = 4096;

/// Clicks counted in memory and not yet in the store.
pub struct Clicks {
    shards: Box<[Mutex<HashMap<String, u64>>]>,
    hasher: RandomState,
    /// The batch being written, or refused by the store and waiting for the next try.
    flushing: Mutex<HashMap<String, u64>>,
    /// Clicks in `shards` and `flushing`.
    pending: AtomicU64,
    /// Distinct codes in `shards` and `flushing` (a code in both counts twice until merged).
    codes: AtomicUsize,
    flush_max: u64,
    max_codes: usize,
    flush_wanted: AtomicBool,
    wake: Notify,
    metrics: Metrics,
}

impl Clicks {
    /// A counter that asks for a flush once `flush_max` clicks are pending, and holds at most
    /// `max_codes` distinct codes (both at least 1).
    pub fn new(flush_max: u64, max_codes: usize, metrics: Metrics) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            hasher: RandomState::new(),
            flushing: Mutex::default(),
            pending: AtomicU64::new(0),
            codes: AtomicUsize::new(0),
            flush_max: flush_max.max(1),
            max_codes: max_codes.max(1),
            flush_wanted: AtomicBool::new(false),
            wake: Notify::new(),
            metrics,
        }
    }

    /// Counts one click on `code`.
    pub fn record(&self, code: &str) {
        let mut shard = lock(self.shard(code));
        if let Some(n) = shard.get_mut(code) {
            *n += 1;
        } else {
            let reserved = self
                .codes
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |held| {
                    (held < self.max_codes).then_some(held + 1)
                });
            if reserved.is_err() {
                drop(shard);
                self.metrics.clicks_dropped.inc();
                self.want_flush();
                return;
            }
            shard.insert(code.to_owned(), 1);
        }
        // Counted while the shard is still locked: a flush drains the shard under this lock,
        // so it can never subtract a click from `pending` before the click was added to it.
        let pending = self.pending.fetch_add(1, Ordering::AcqRel) + 1;
        self.metrics.clicks_pending.inc();
        drop(shard);
        if pending >= self.flush_max || self.codes.load(Ordering::Acquire) >= self.max_codes / 2 {
            self.want_flush();
        }
    }

    /// Clicks counted and not yet in the store.
    pub fn pending(&self) -> u64 {
        self.pending.load(Ordering::Acquire)
    }

    /// Resolves when a flush was asked for early (too many clicks or codes pending).
    pub async fn flush_wanted(&self) {
        self.wake.notified().await;
    }

    /// Runs `read` (a read of the store) while no flush can commit, and returns its result
    /// with the clicks on `code` not yet in the store: their sum is the exact total.
    pub fn read_with_pending<R>(&self, code: &str, read: impl FnOnce() -> R) -> (R, u64) {
        let flushing = lock(&self.flushing);
        let stored = read();
        let pending = flushing.get(code).copied().unwrap_or(0)
            + lock(self.shard(code)).get(code).copied().unwrap_or(0);
        drop(flushing);
        (stored, pending)
    }

    /// Writes every pending count to `store` in one transaction and returns how many clicks
    /// it wrote. If the store fails, the counts stay pending (nothing is lost) and are written
    /// with the next flush.
    pub fn flush(&self, store: &dyn UrlStore) -> Result<u64, StoreError> {
        self.flush_wanted.store(false, Ordering::Release);
        let mut flushing = lock(&self.flushing);
        for shard in self.shards.iter() {
            let drained = std::mem::take(&mut *lock(shard));
            for (code, n) in drained {
                match flushing.entry(code) {
                    Entry::Occupied(mut held) => {
                        *held.get_mut() += n;
                        self.codes.fetch_sub(1, Ordering::AcqRel);
                    }
                    Entry::Vacant(slot) => {
                        slot.insert(n);
                    }
                }
            }
        }
        if flushing.is_empty() {
            return Ok(0);
        }
        if let Err(e) = store.add_clicks(&flushing) {
            self.metrics.flush_failures.inc();
            return Err(e);
        }
        let clicks: u64 = flushing.values().sum();
        let codes = flushing.len();
        flushing.clear();
        if flushing.capacity() > KEEP_CAPACITY {
            flushing.shrink_to(KEEP_CAPACITY);
        }
        drop(flushing);
        self.codes.fetch_sub(codes, Ordering::AcqRel);
        self.pending.fetch_sub(clicks, Ordering::AcqRel);
        self.metrics
            .clicks_pending
            .sub(i64::try_from(clicks).unwrap_or(i64::MAX));
        self.metrics.flushes.inc();
        self.metrics.clicks_flushed.inc_by(clicks);
        Ok(clicks)
    }

    fn shard(&self, code: &str) -> &Mutex<HashMap<String, u64>> {
        // The modulo keeps the index below SHARDS, so the cast cannot truncate a used bit.
        let i = (self.hasher.hash_one(code) % SHARDS as u64) as usize;
        &self.shards[i]
    }

    fn want_flush(&self) {
        if !self.flush_wanted.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every critical section is a single map operation, so a poisoned map is still whole.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::urls::store::{CreateError, Link, StoredLink};
    use prometheus::Registry;
    use std::sync::Arc;

    /// A store that only counts clicks, and fails while `failing` is set.
    #[derive(Default)]
    struct CountingStore {
        clicks: Mutex<HashMap<String, u64>>,
        failing: AtomicBool,
        batches: AtomicUsize,
    }

    impl UrlStore for CountingStore {
        fn create(&self, _: &Link) -> Result<(), CreateError> {
            Ok(())
        }
        fn get(&self, _: &str) -> Result<Option<StoredLink>, StoreError> {
            Ok(None)
        }
        fn add_clicks(&self, batch: &HashMap<String, u64>) -> Result<(), StoreError> {
            if self.failing.load(Ordering::SeqCst) {
                return Err(StoreError("disk on fire".into()));
            }
            self.batches.fetch_add(1, Ordering::SeqCst);
            let mut clicks = self.clicks.lock().unwrap();
            for (code, n) in batch {
                *clicks.entry(code.clone()).or_default() += n;
            }
            drop(clicks);
            Ok(())
        }
    }

    impl CountingStore {
        fn of(&self, code: &str) -> u64 {
            self.clicks.lock().unwrap().get(code).copied().unwrap_or(0)
        }
    }

    fn clicks(flush_max: u64, max_codes: usize) -> (Clicks, Metrics) {
        let metrics = Metrics::new(&Registry::new()).unwrap();
        (Clicks::new(flush_max, max_codes, metrics.clone()), metrics)
    }

    #[test]
    fn counts_are_flushed_in_one_batch() {
        let (c, m) = clicks(1000, 100);
        let store = CountingStore::default();
        for _ in 0..5 {
            c.record("a");
        }
        c.record("b");
        assert_eq!(c.pending(), 6);
        assert_eq!(m.clicks_pending.get(), 6);
        assert_eq!(c.flush(&store).unwrap(), 6);
        assert_eq!((store.of("a"), store.of("b")), (5, 1));
        assert_eq!(store.batches.load(Ordering::SeqCst), 1);
        assert_eq!((c.pending(), m.clicks_pending.get()), (0, 0));
        assert_eq!((m.flushes.get(), m.clicks_flushed.get()), (1, 6));
        // Nothing pending: no empty transaction.
        assert_eq!(c.flush(&store).unwrap(), 0);
        assert_eq!(m.flushes.get(), 1);
    }

    #[test]
    fn a_failed_flush_keeps_the_counts_for_the_next() {
        let (c, m) = clicks(1000, 100);
        let store = CountingStore::default();
        c.record("a");
        c.record("a");
        store.failing.store(true, Ordering::SeqCst);
        assert!(c.flush(&store).is_err());
        assert_eq!(m.flush_failures.get(), 1);
        assert_eq!(c.pending(), 2);
        // Readers still see the refused batch.
        assert_eq!(c.read_with_pending("a", || ()).1, 2);
        c.record("a");
        c.record("b");
        store.failing.store(false, Ordering::SeqCst);
        assert_eq!(c.flush(&store).unwrap(), 4);
        assert_eq!((store.of("a"), store.of("b")), (3, 1));
        assert_eq!(c.pending(), 0);
        assert_eq!(c.codes.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn flush_is_asked_for_at_flush_max() {
        let (c, _) = clicks(3, 100);
        c.record("a");
        c.record("a");
        assert!(!c.flush_wanted.load(Ordering::SeqCst));
        c.record("a");
        assert!(c.flush_wanted.load(Ordering::SeqCst));
    }

    #[test]
    fn distinct_codes_are_capped() {
        let (c, m) = clicks(1_000_000, 4);
        let store = CountingStore::default();
        c.record("a");
        assert!(!c.flush_wanted.load(Ordering::SeqCst));
        c.record("b");
        // Half the cap: an early flush is asked for.
        assert!(c.flush_wanted.load(Ordering::SeqCst));
        c.record("c");
        c.record("d");
        c.record("e");
        assert_eq!(m.clicks_dropped.get(), 1);
        // Known codes are still counted at the cap.
        c.record("a");
        assert_eq!(c.pending(), 5);
        assert_eq!(c.flush(&store).unwrap(), 5);
        c.record("e");
        assert_eq!(c.pending(), 1);
    }

    #[test]
    fn concurrent_clicks_are_all_counted() {
        let (c, _) = clicks(1_000_000, 1000);
        let c = Arc::new(c);
        let store = Arc::new(CountingStore::default());
        let threads: Vec<_> = (0..4)
            .map(|t| {
                let (c, store) = (c.clone(), store.clone());
                std::thread::spawn(move || {
                    for i in 0..5000 {
                        c.record(&format!("code{}", i % 7));
                        if t == 0 && i % 500 == 0 {
                            c.flush(&*store).unwrap();
                        }
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        c.flush(&*store).unwrap();
        let total: u64 = (0..7).map(|i| store.of(&format!("code{i}"))).sum();
        assert_eq!(total, 20_000);
    }
}
