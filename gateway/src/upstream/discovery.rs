//! Target discovery: IP literals as they are, DNS names through `tokio::net::lookup_host`.
//!
//! A name that resolves to several addresses becomes several targets, each carrying the
//! configured weight of the name (as nginx does): a name is then weighted by how many
//! addresses it has, and no weight is lost to integer division. An address that appears more
//! than once (the same IP written twice, or two names sharing an address) becomes one target
//! whose weight is the sum, since health, ejection and in-flight counts are per address.
//! A failed re-resolution keeps the name's last good addresses.

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Target;

/// Most targets a pool holds after resolution; further addresses are dropped with a warning.
pub const MAX_TARGETS: usize = 256;

/// How long one name's resolution may take.
pub(crate) const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);

/// Most addresses taken from one name.
const MAX_ADDRESSES_PER_NAME: usize = 64;

/// One target address before its state is attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EndpointSpec {
    /// Where to connect.
    pub(crate) addr: SocketAddr,
    /// Relative weight, at least 1.
    pub(crate) weight: u32,
    /// `host:port` as configured.
    pub(crate) authority: Arc<str>,
}

/// The IP address of a target written as an IP literal (`10.0.0.1`, `::1`, `[::1]`).
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().ok()
}

/// Whether any target needs DNS.
pub(crate) fn has_names(targets: &[Target]) -> bool {
    targets.iter().any(|t| ip_literal(&t.host).is_none())
}

/// The endpoints of `targets`, given the current addresses of each name target (`resolved[i]`
/// belongs to `targets[i]` and is ignored for IP literals; `None`: not resolved yet). Weights
/// of 0 count as 1; duplicates merge; at most [`MAX_TARGETS`] endpoints.
pub(crate) fn expand(
    pool: &str,
    targets: &[Target],
    resolved: &[Option<Vec<SocketAddr>>],
) -> Vec<EndpointSpec> {
    let mut specs: Vec<EndpointSpec> = Vec::with_capacity(targets.len());
    for (i, target) in targets.iter().enumerate() {
        let authority: Arc<str> = Arc::from(target.authority());
        let addrs: Vec<SocketAddr> = match ip_literal(&target.host) {
            Some(ip) => vec![SocketAddr::new(ip, target.port)],
            None => resolved.get(i).cloned().flatten().unwrap_or_default(),
        };
        for addr in addrs {
            let weight = target.weight.max(1);
            if let Some(existing) = specs.iter_mut().find(|s| s.addr == addr) {
                existing.weight = existing.weight.saturating_add(weight);
            } else if specs.len() < MAX_TARGETS {
                specs.push(EndpointSpec {
                    addr,
                    weight,
                    authority: Arc::clone(&authority),
                });
            } else {
                log::warn!("upstream {pool}: more than {MAX_TARGETS} targets, {addr} left out");
            }
        }
    }
    specs
}

/// The addresses of `host:port`, at most [`MAX_ADDRESSES_PER_NAME`], sorted so that the
/// order does not depend on the resolver. An empty answer is an error.
pub(crate) async fn resolve(host: &str, port: u16) -> std::io::Result<Vec<SocketAddr>> {
    let lookup = tokio::net::lookup_host((host, port));
    let mut addrs: Vec<SocketAddr> = tokio::time::timeout(RESOLVE_TIMEOUT, lookup)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "DNS lookup timed out"))??
        .take(MAX_ADDRESSES_PER_NAME)
        .collect();
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "name has no addresses",
        ));
    }
    Ok(addrs)
}

/// Resolves every name target once; a failure keeps `last_good[i]` and is logged.
pub(crate) async fn refresh(
    pool: &str,
    targets: &[Target],
    last_good: &mut [Option<Vec<SocketAddr>>],
) {
    refresh_with(pool, targets, last_good, |host, port| async move {
        resolve(&host, port).await
    })
    .await;
}

/// [`refresh`] with the resolver given (tests resolve without the network).
async fn refresh_with<F, Fut>(
    pool: &str,
    targets: &[Target],
    last_good: &mut [Option<Vec<SocketAddr>>],
    resolver: F,
) where
    F: Fn(String, u16) -> Fut,
    Fut: Future<Output = std::io::Result<Vec<SocketAddr>>>,
{
    for (target, slot) in targets.iter().zip(last_good.iter_mut()) {
        if ip_literal(&target.host).is_some() {
            continue;
        }
        match resolver(target.host.clone(), target.port).await {
            Ok(addrs) => *slot = Some(addrs),
            Err(err) => log::warn!(
                "upstream {pool}: resolving {} failed, keeping the last addresses: {err}",
                target.authority()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(host: &str, port: u16, weight: u32) -> Target {
        Target {
            host: host.to_owned(),
            port,
            weight,
        }
    }

    #[test]
    fn ip_literals_parse() {
        assert_eq!(ip_literal("10.0.0.1"), Some(IpAddr::from([10, 0, 0, 1])));
        assert_eq!(ip_literal("::1"), "::1".parse().ok());
        assert_eq!(ip_literal("[::1]"), "::1".parse().ok());
        assert_eq!(ip_literal("localhost"), None);
        assert!(has_names(&[
            target("10.0.0.1", 1, 1),
            target("db.local", 1, 1)
        ]));
        assert!(!has_names(&[target("10.0.0.1", 1, 1)]));
    }

    #[test]
    fn names_expand_to_their_addresses_and_duplicates_merge() {
        let targets = [
            target("10.0.0.1", 80, 2),
            target("api.internal", 8080, 3),
            target("10.0.0.1", 80, 0),
            target("pending.internal", 80, 1),
        ];
        let a: SocketAddr = "10.0.0.7:8080".parse().unwrap();
        let b: SocketAddr = "10.0.0.8:8080".parse().unwrap();
        let resolved = vec![None, Some(vec![a, b]), None, None];
        let specs = expand("p", &targets, &resolved);
        let got: Vec<_> = specs
            .iter()
            .map(|s| (s.addr.to_string(), s.weight))
            .collect();
        assert_eq!(
            got,
            [
                ("10.0.0.1:80".to_owned(), 3),
                ("10.0.0.7:8080".to_owned(), 3),
                ("10.0.0.8:8080".to_owned(), 3)
            ]
        );
        assert_eq!(&*specs[1].authority, "api.internal:8080");
    }

    #[test]
    fn expansion_is_bounded() {
        let targets: Vec<_> = (0..300u16)
            .map(|p| target("127.0.0.1", 1000 + p, 1))
            .collect();
        assert_eq!(expand("p", &targets, &[]).len(), MAX_TARGETS);
    }

    #[tokio::test]
    async fn localhost_resolves() {
        let addrs = resolve("localhost", 8080).await.unwrap();
        assert!(addrs
            .iter()
            .all(|a| a.ip().is_loopback() && a.port() == 8080));
    }

    #[tokio::test]
    async fn failed_refresh_keeps_the_last_good_addresses() {
        let targets = [
            target("good.test", 80, 1),
            target("10.0.0.1", 80, 1),
            target("bad.test", 80, 1),
        ];
        let old: SocketAddr = "10.9.9.9:80".parse().unwrap();
        let new: SocketAddr = "10.9.9.10:80".parse().unwrap();
        let mut last_good = vec![Some(vec![old]), None, Some(vec![old])];
        refresh_with("p", &targets, &mut last_good, |host, _port| async move {
            match host.as_str() {
                "good.test" => Ok(vec![new]),
                _ => Err(std::io::Error::other("no answer")),
            }
        })
        .await;
        assert_eq!(last_good, [Some(vec![new]), None, Some(vec![old])]);
    }
}
