//! Tiering: an edge picks its parent (shield) by consistent hashing of the cache key, and
//! every tier refuses requests that already passed through it (loop prevention).

use std::fmt;
use std::net::SocketAddr;

use pingora_ketama::{Bucket, Continuum};

/// Hop header each tier appends its name to before forwarding (`edge-a, shield-1`).
pub const TIER_HEADER: &str = "x-meridian-tier";

/// Status for a request refused as a forwarding loop (RFC 5842 508 Loop Detected).
pub const LOOP_DETECTED: u16 = 508;

/// Longest tier name accepted: names travel in a header.
pub const MAX_TIER_NAME: usize = 64;

/// One shield: its address and its share of the keys (relative weight, at least 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shield {
    /// Where the shield listens.
    pub addr: SocketAddr,
    /// Relative weight: a shield of weight 2 takes about twice the keys of weight 1.
    pub weight: u32,
}

/// The shields of an edge on a consistent-hash ring (ketama, as nginx `hash ... consistent`):
/// the same key always picks the same shield, and removing a shield only moves its own keys.
pub struct Shields {
    ring: Continuum,
    count: usize,
}

impl fmt::Debug for Shields {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shields")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl Shields {
    /// A ring over `shields` (weights of 0 count as 1). Duplicate addresses are kept once,
    /// with the first weight.
    pub fn new(shields: &[Shield]) -> Self {
        let mut buckets: Vec<Bucket> = Vec::with_capacity(shields.len());
        let mut seen: Vec<SocketAddr> = Vec::with_capacity(shields.len());
        for s in shields {
            if !seen.contains(&s.addr) {
                seen.push(s.addr);
                buckets.push(Bucket::new(s.addr, s.weight.max(1)));
            }
        }
        Shields {
            ring: Continuum::new(&buckets),
            count: seen.len(),
        }
    }

    /// The shield for `cache_key`; `None` when there are no shields.
    pub fn pick(&self, cache_key: &[u8]) -> Option<SocketAddr> {
        self.ring.node(cache_key)
    }

    /// Every shield in ring order for `cache_key`, starting with [`pick`](Self::pick)'s,
    /// each once: the failover order when the first is down.
    pub fn candidates(&self, cache_key: &[u8]) -> Vec<SocketAddr> {
        let mut order: Vec<SocketAddr> = Vec::with_capacity(self.count);
        for addr in self.ring.node_iter(cache_key) {
            if order.len() == self.count {
                break;
            }
            if !order.contains(addr) {
                order.push(*addr);
            }
        }
        order
    }

    /// Number of distinct shields.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are no shields.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Why a request was refused as a loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoopError {
    /// Our own tier name is already in the hop header.
    SeenSelf(String),
    /// The request already passed through more tiers than allowed.
    TooManyHops {
        /// Tiers listed in the hop header.
        hops: usize,
        /// The allowed maximum.
        max: usize,
    },
}

impl fmt::Display for LoopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LoopError::SeenSelf(name) => {
                write!(f, "request already passed through tier {name:?}")
            }
            LoopError::TooManyHops { hops, max } => {
                write!(f, "request passed through {hops} tiers, more than {max}")
            }
        }
    }
}

impl std::error::Error for LoopError {}

/// Loop prevention for one tier: its name and the most tiers a request may have crossed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierGuard {
    name: String,
    max_hops: usize,
}

impl TierGuard {
    /// A guard for the tier called `name` (trimmed; commas and controls are not allowed,
    /// at most [`MAX_TIER_NAME`] bytes) refusing requests that crossed more than `max_hops`
    /// tiers.
    pub fn new(name: &str, max_hops: usize) -> Result<Self, String> {
        let name = name.trim();
        let valid = !name.is_empty()
            && name.len() <= MAX_TIER_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"');
        if !valid {
            return Err(format!(
                "tier name {name:?} must be 1 to {MAX_TIER_NAME} visible ASCII characters without commas or quotes"
            ));
        }
        Ok(TierGuard {
            name: name.to_owned(),
            max_hops,
        })
    }

    /// The tier's name, as it appears in the hop header.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The most tiers a request may have crossed before reaching this one.
    pub fn max_hops(&self) -> usize {
        self.max_hops
    }

    /// Checks the incoming hop headers (each a comma-separated list of tier names; repeated
    /// headers concatenate): refused with [`LOOP_DETECTED`] when our name is listed or when
    /// more than `max_hops` tiers are.
    pub fn check<'a>(
        &self,
        hop_headers: impl IntoIterator<Item = &'a str>,
    ) -> Result<(), LoopError> {
        let mut hops = 0;
        for name in hop_headers
            .into_iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            if name.eq_ignore_ascii_case(&self.name) {
                return Err(LoopError::SeenSelf(self.name.clone()));
            }
            hops += 1;
        }
        if hops > self.max_hops {
            return Err(LoopError::TooManyHops {
                hops,
                max: self.max_hops,
            });
        }
        Ok(())
    }

    /// The hop header value to forward: the incoming list with our name appended.
    pub fn forward<'a>(&self, hop_headers: impl IntoIterator<Item = &'a str>) -> String {
        let mut value = String::new();
        for name in hop_headers
            .into_iter()
            .flat_map(|h| h.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            value.push_str(name);
            value.push_str(", ");
        }
        value.push_str(&self.name);
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn shield(port: u16, weight: u32) -> Shield {
        Shield {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            weight,
        }
    }

    fn keys() -> impl Iterator<Item = String> {
        (0..10_000).map(|i| format!("GET example.test/live/seg{i}.ts"))
    }

    #[test]
    fn same_key_same_shield_and_removal_moves_only_its_keys() {
        let all = [shield(9001, 1), shield(9002, 1), shield(9003, 1)];
        let ring = Shields::new(&all);
        let again = Shields::new(&all);
        let before: HashMap<String, SocketAddr> = keys()
            .map(|k| {
                let s = ring.pick(k.as_bytes()).unwrap();
                assert_eq!(again.pick(k.as_bytes()), Some(s));
                (k, s)
            })
            .collect();
        let mut per: HashMap<SocketAddr, usize> = HashMap::new();
        for s in before.values() {
            *per.entry(*s).or_default() += 1;
        }
        assert_eq!(per.len(), 3);
        assert!(per.values().all(|&n| n > 2_000), "{per:?}");

        let without = Shields::new(&all[..2]);
        for (k, s) in &before {
            let now = without.pick(k.as_bytes()).unwrap();
            if *s == all[2].addr {
                assert_ne!(now, all[2].addr);
            } else {
                assert_eq!(now, *s, "{k} moved although its shield stayed");
            }
        }
    }

    #[test]
    fn weights_and_candidates() {
        let ring = Shields::new(&[shield(9001, 3), shield(9002, 1), shield(9001, 5)]);
        assert_eq!(ring.len(), 2);
        let heavy = keys()
            .filter(|k| ring.pick(k.as_bytes()) == Some(shield(9001, 0).addr))
            .count();
        assert!((6_000..9_000).contains(&heavy), "{heavy}");
        let c = ring.candidates(b"k");
        assert_eq!(c.len(), 2);
        assert_eq!(Some(c[0]), ring.pick(b"k"));
        assert_ne!(c[0], c[1]);

        let none = Shields::new(&[]);
        assert!(none.is_empty());
        assert_eq!(none.pick(b"k"), None);
        assert!(none.candidates(b"k").is_empty());
    }

    #[test]
    fn loops_are_refused() {
        let guard = TierGuard::new("edge-a", 2).unwrap();
        assert_eq!(guard.check([]), Ok(()));
        assert_eq!(guard.check(["shield-1"]), Ok(()));
        assert_eq!(
            guard.check(["shield-1, EDGE-A"]),
            Err(LoopError::SeenSelf("edge-a".into()))
        );
        assert_eq!(
            guard.check(["a, b", "c"]),
            Err(LoopError::TooManyHops { hops: 3, max: 2 })
        );
        assert_eq!(guard.forward([]), "edge-a");
        assert_eq!(guard.forward(["x, ,y", "z"]), "x, y, z, edge-a");
        assert!(TierGuard::new("", 2).is_err());
        assert!(TierGuard::new("a,b", 2).is_err());
        assert!(TierGuard::new(&"n".repeat(65), 2).is_err());
    }
}
