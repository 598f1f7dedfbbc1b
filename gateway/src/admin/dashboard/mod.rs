//! The live dashboard: `GET /dashboard` serves one self-contained HTML page, which polls
//! `GET /admin/dashboard` (JSON) and renders it.
//!
//! One background task scrapes this gateway's own metrics and every configured source
//! (`admin.dashboard.sources`) each `admin.dashboard.scrape_every`, all sources at once, each
//! within a short timeout and a body cap. It keeps the last two successful scrapes of every
//! target (rates and window latencies are their differences) and the last error of a source
//! that is down. The task reads the sources from the current plan on every round, so a reload
//! changes them; it ends when the admin app is dropped.

use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use log::error;
use serde_json::json;
use tokio::task::JoinSet;

use crate::config::model::MetricsSource;
use crate::plan::Plan;
use crate::proxy::cache::EdgeCache;
use crate::telemetry::Metrics;

mod digest;
mod prom;
mod scrape;
mod view;

use digest::Digest;
use view::{Panel, Previous};

/// The dashboard page.
pub(super) const PAGE: &str = include_str!("page.html");

/// Longest wait for one source in a round (shorter when `scrape_every` is).
const MAX_TIMEOUT: Duration = Duration::from_secs(2);

/// The dashboard's shared state: the scrapes so far.
pub(super) struct Dashboard {
    state: Mutex<State>,
}

/// The targets, as of the last round.
struct State {
    rounds: u64,
    scrape_every: Duration,
    gateway: Target,
    sources: Vec<Target>,
}

/// One scrape target and what is known about it.
struct Target {
    name: String,
    url: String,
    last: Option<Scraped>,
    previous: Option<Scraped>,
    error: Option<String>,
}

/// One successful scrape.
struct Scraped {
    digest: Digest,
    at: Instant,
}

impl Target {
    fn new(name: &str, url: &str) -> Target {
        Target {
            name: name.to_owned(),
            url: url.to_owned(),
            last: None,
            previous: None,
            error: None,
        }
    }

    fn record(&mut self, result: Result<Digest, String>, at: Instant) {
        match result {
            Ok(digest) => {
                self.previous = self.last.take();
                self.last = Some(Scraped { digest, at });
                self.error = None;
            }
            Err(e) => self.error = Some(e),
        }
    }

    fn json(&self, now: Instant) -> serde_json::Value {
        let status = match (&self.error, &self.last) {
            (Some(e), _) => format!("down: {e}"),
            (None, Some(_)) => "up".to_owned(),
            (None, None) => "waiting for the first scrape".to_owned(),
        };
        let panel = self.last.as_ref().map(|last| {
            let previous = self.previous.as_ref().map(|p| Previous {
                digest: &p.digest,
                elapsed: last.at.saturating_duration_since(p.at),
            });
            Panel::build(&last.digest, previous)
        });
        json!({
            "name": self.name,
            "url": self.url,
            "status": status,
            "up": self.error.is_none() && self.last.is_some(),
            "scraped_ms_ago": self.last.as_ref().map(|l| millis(now.saturating_duration_since(l.at))),
            "panel": panel,
        })
    }
}

impl Dashboard {
    /// Starts the scrape task on `rt` over the plans published in `plan`; the gateway's own
    /// numbers are `own`'s (its metrics and cache).
    pub(super) fn start(
        plan: Arc<ArcSwap<Plan>>,
        own: Own,
        rt: &tokio::runtime::Handle,
    ) -> Arc<Dashboard> {
        let me = Arc::new(Dashboard {
            state: Mutex::new(State {
                rounds: 0,
                scrape_every: plan.load().config.admin.dashboard.scrape_every,
                gateway: Target::new("gateway", "/metrics"),
                sources: Vec::new(),
            }),
        });
        rt.spawn(run(Arc::downgrade(&me), plan, own));
        me
    }

    /// The dashboard's JSON (without the plan's upstreams, which the caller adds).
    pub(super) fn json(&self) -> serde_json::Value {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        json!({
            "rounds": state.rounds,
            "scrape_every_ms": millis(state.scrape_every),
            "gateway": state.gateway.json(now),
            "sources": state.sources.iter().map(|s| s.json(now)).collect::<Vec<_>>(),
        })
    }

    /// Records one round: this gateway's scrape and each source's, in config order.
    fn record(
        &self,
        every: Duration,
        gateway: Result<Digest, String>,
        sources: Vec<(&MetricsSource, Result<Digest, String>)>,
        at: Instant,
    ) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.rounds += 1;
        state.scrape_every = every;
        state.gateway.record(gateway, at);
        let mut old = std::mem::take(&mut state.sources);
        for (source, result) in sources {
            // A source kept across a reload keeps its history (and so its rates).
            let mut target = match old
                .iter()
                .position(|t| t.name == source.name && t.url == source.url)
            {
                Some(i) => old.swap_remove(i),
                None => Target::new(&source.name, &source.url),
            };
            target.record(result, at);
            state.sources.push(target);
        }
    }
}

/// `d` in whole milliseconds, as a JSON-friendly `u64`.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The scrape loop: one round every `scrape_every` of the current plan.
async fn run(me: Weak<Dashboard>, plan: Arc<ArcSwap<Plan>>, own: Own) {
    let client = match scrape::client() {
        Ok(c) => c,
        Err(e) => {
            error!("dashboard: {e}; the dashboard shows no sources");
            return;
        }
    };
    loop {
        let started = tokio::time::Instant::now();
        let config = plan.load().config.admin.dashboard.clone();
        let timeout = config.scrape_every.min(MAX_TIMEOUT);
        let mut set = JoinSet::new();
        for (i, source) in config.sources.iter().enumerate() {
            let (client, url) = (client.clone(), source.url.clone());
            set.spawn(async move { (i, scrape::scrape(&client, &url, timeout).await) });
        }
        let gateway = own.digest();
        let mut results: Vec<Result<Digest, String>> = config
            .sources
            .iter()
            .map(|_| Err("the scrape task failed".to_owned()))
            .collect();
        while let Some(joined) = set.join_next().await {
            if let Ok((i, result)) = joined {
                if let Some(slot) = results.get_mut(i) {
                    *slot = result;
                }
            }
        }
        let Some(dashboard) = me.upgrade() else {
            return;
        };
        dashboard.record(
            config.scrape_every,
            gateway,
            config.sources.iter().zip(results).collect(),
            Instant::now(),
        );
        drop(dashboard);
        tokio::time::sleep_until(started + config.scrape_every).await;
    }
}

/// The gateway the dashboard belongs to: its metrics and cache.
pub(super) struct Own {
    /// The gateway's metrics.
    pub metrics: Arc<Metrics>,
    /// The gateway's cache, when it has one.
    pub edge: Option<Arc<EdgeCache>>,
}

impl Own {
    /// This gateway's metrics, as `GET /metrics` renders them.
    fn digest(&self) -> Result<Digest, String> {
        if let Some(edge) = &self.edge {
            edge.observe();
        }
        let text = self.metrics.render();
        prom::parse(&text).map(|samples| Digest::of(&samples))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source(name: &str, url: &str) -> MetricsSource {
        MetricsSource {
            name: name.into(),
            url: url.into(),
        }
    }

    fn dashboard() -> Dashboard {
        Dashboard {
            state: Mutex::new(State {
                rounds: 0,
                scrape_every: Duration::from_secs(2),
                gateway: Target::new("gateway", "/metrics"),
                sources: Vec::new(),
            }),
        }
    }

    fn dlq(depth: u32) -> Result<Digest, String> {
        Ok(Digest::of(
            &prom::parse(&format!("orders_dlq_depth {depth}\n")).expect("parses"),
        ))
    }

    #[test]
    fn sources_keep_their_history_and_their_last_error() {
        let d = dashboard();
        let orders = source("orders", "http://127.0.0.1:9102/metrics");
        let edge = source("edge", "http://127.0.0.1:9902/metrics");
        let t0 = Instant::now();
        d.record(
            Duration::from_secs(2),
            Ok(Digest::default()),
            vec![(&orders, dlq(2)), (&edge, Err("Connection refused".into()))],
            t0,
        );
        let v = d.json();
        assert_eq!(v["rounds"], 1);
        assert_eq!(v["sources"][0]["status"], "up");
        assert_eq!(v["sources"][0]["panel"]["dlq_depth"], 2.0);
        assert_eq!(v["sources"][1]["status"], "down: Connection refused");
        assert_eq!(v["sources"][1]["panel"], serde_json::Value::Null);
        assert_eq!(v["gateway"]["status"], "up");

        // A reload drops edge and reorders; orders keeps its last scrape while it is down.
        d.record(
            Duration::from_secs(1),
            Ok(Digest::default()),
            vec![(&orders, Err("HTTP 503 Service Unavailable".into()))],
            t0 + Duration::from_secs(2),
        );
        let v = d.json();
        assert_eq!(v["scrape_every_ms"], 1000);
        assert_eq!(v["sources"].as_array().map(Vec::len), Some(1));
        assert_eq!(
            v["sources"][0]["status"],
            "down: HTTP 503 Service Unavailable"
        );
        assert_eq!(v["sources"][0]["up"], false);
        assert_eq!(v["sources"][0]["panel"]["dlq_depth"], 2.0);
    }

    #[test]
    fn the_page_is_self_contained() {
        for external in [
            "src=", "href=", "@import", "url(", "//cdn", "http://", "https://",
        ] {
            assert!(!PAGE.contains(external), "the page loads {external}…");
        }
        assert!(PAGE.contains("fetch(\"/admin/dashboard\""));
    }

    #[test]
    fn own_metrics_parse() {
        let own = Own {
            metrics: Arc::new(Metrics::new().expect("metrics")),
            edge: None,
        };
        let digest = own.digest().expect("the gateway's own text parses");
        assert!(digest.saga.is_empty());
    }
}
