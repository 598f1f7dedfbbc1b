//! Food-delivery orders: an orchestrated saga (order → payment → delivery → notification, with
//! refund and cancellation as compensation) over an append-only event store, projected into a
//! read model, with an outbox, retrying consumers and a dead-letter queue.
//!
//! How the parts fit (see `docs/origins/orders.md`):
//! - [`api`] appends `OrderPlaced` (and an outbox row, in the same transaction);
//! - [`outbox`]'s relay moves outbox rows onto the durable queues of the consumers;
//! - [`consumer`] runs each consumer ([`saga`], [`projection`], [`notifier`]) with retries,
//!   backoff and a dead-letter queue;
//! - [`saga`] calls the [`participants`] (payment, delivery) over HTTP through [`client`].

mod api;
mod backoff;
mod client;
mod consumer;
mod events;
mod faults;
mod housekeeping;
mod idempotency;
mod metrics;
mod notifier;
mod outbox;
mod participants;
mod projection;
mod queue;
mod saga;
mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{watch, Notify};

use crate::http::{self, BoxError};
use backoff::Backoff;
use client::ParticipantClient;
use faults::Faults;
use metrics::OrdersMetrics;
use queue::Consumer;
use store::Store;

/// How the orders service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where its embedded store (`orders.db`) lives.
    pub data_dir: PathBuf,
    /// Base URL of the payment and delivery participants (`/api/payments/*`,
    /// `/api/deliveries*`), e.g. the gateway's. `None`: this service's own listener.
    pub participants_url: Option<String>,
    /// Time limit of one participant call.
    pub participant_timeout: Duration,
    /// Calls made for one saga step before it counts as failed (5xx, timeouts, refused
    /// connections are retried; 4xx are not).
    pub step_attempts: u32,
    /// First retry delay (consumers and participant calls); doubles per retry, with jitter.
    pub retry_base: Duration,
    /// Largest retry delay.
    pub retry_cap: Duration,
    /// Attempts at a message before it moves to the dead-letter queue.
    pub max_attempts: u32,
    /// Whether faults may be injected (`POST /api/orders/faults`, `X-Fault`).
    pub faults: bool,
    /// How long `X-Fault: payment=slow` / `delivery=slow` makes the participant wait.
    pub slow_delay: Duration,
    /// Test hook: abort the process right after the first order's events and outbox rows
    /// commit, before the relay publishes them.
    pub crash_after_append: bool,
    /// How long an idempotency key is remembered.
    pub idempotency_ttl: Duration,
    /// Most idempotency keys kept (the oldest go first).
    pub idempotency_max_keys: u32,
    /// Queued messages and unpublished outbox rows past which new orders get 503.
    pub max_backlog: u32,
    /// Largest request body, in bytes.
    pub max_body: usize,
}

impl Config {
    /// The defaults, with the store under `data_dir`.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            participants_url: None,
            participant_timeout: Duration::from_secs(2),
            step_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_cap: Duration::from_secs(10),
            max_attempts: 5,
            faults: false,
            slow_delay: Duration::from_secs(3),
            crash_after_append: false,
            idempotency_ttl: Duration::from_secs(24 * 3600),
            idempotency_max_keys: 100_000,
            max_backlog: 10_000,
            max_body: 64 * 1024,
        }
    }
}

/// What the handlers and background tasks share.
struct Ctx {
    store: Store,
    metrics: OrdersMetrics,
    faults: Faults,
    client: ParticipantClient,
    retry: Backoff,
    max_attempts: u32,
    idempotency_ttl: Duration,
    idempotency_max_keys: u32,
    max_backlog: u32,
    crash_after_append: bool,
    /// Wakes the outbox relay (an append committed).
    relay_wake: Notify,
    /// Wakes each consumer (its queue got messages), indexed like [`Consumer::ALL`].
    consumer_wake: [Notify; 3],
    /// Signalled whenever the read model changes (for long polls).
    view_changed: Notify,
    /// Becomes true when background work must stop.
    stop: watch::Receiver<bool>,
}

impl Ctx {
    fn wake(&self, consumer: Consumer) -> &Notify {
        let index = Consumer::ALL
            .iter()
            .position(|c| *c == consumer)
            .unwrap_or_default();
        &self.consumer_wake[index]
    }

    fn stopping(&self) -> bool {
        *self.stop.borrow()
    }

    /// Appends `events` to order `id` at `expected` version, counts them and wakes the relay.
    async fn append(
        &self,
        id: &str,
        expected: i64,
        events: Vec<events::Event>,
    ) -> Result<Result<(), store::VersionConflict>, store::StoreError> {
        let stream = id.to_string();
        let count = u64::try_from(events.len()).unwrap_or(u64::MAX);
        let appended = self
            .store
            .tx(move |tx| store::append(tx, &stream, expected, &events))
            .await?;
        if appended.is_ok() {
            self.metrics.appended.inc_by(count);
            self.relay_wake.notify_one();
        }
        Ok(appended.map(|_| ()))
    }
}

/// Serves the orders service on `listener` until `shutdown` resolves, then drains: the
/// consumers settle the messages they hold (a saga step cut short by the shutdown goes back on
/// its queue without counting as an attempt), the relay stops, then in-flight requests finish.
/// Everything not yet handled is in the store and is picked up by the next run.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let store = Store::open(&config.data_dir)?;
    store.tx(queue::reclaim_inflight).await?;
    let registry = prometheus::Registry::new();
    let metrics = OrdersMetrics::new(&registry)?;
    let participants_url = match &config.participants_url {
        Some(url) => url.trim_end_matches('/').to_string(),
        None => own_url(listener.local_addr()?),
    };
    let retry = Backoff {
        base: config.retry_base,
        cap: config.retry_cap,
    };
    let (stop_tx, stop) = watch::channel(false);
    let client = ParticipantClient::new(
        participants_url,
        config.participant_timeout,
        config.step_attempts.max(1),
        retry,
        stop.clone(),
    )?;
    let ctx = Arc::new(Ctx {
        store,
        metrics,
        faults: Faults::new(config.faults, config.slow_delay),
        client,
        retry,
        max_attempts: config.max_attempts.max(1),
        idempotency_ttl: config.idempotency_ttl,
        idempotency_max_keys: config.idempotency_max_keys,
        max_backlog: config.max_backlog,
        crash_after_append: config.crash_after_append,
        relay_wake: Notify::new(),
        consumer_wake: [Notify::new(), Notify::new(), Notify::new()],
        view_changed: Notify::new(),
        stop,
    });

    ctx.metrics
        .dlq_depth
        .set(ctx.store.tx(queue::dead_depth).await?);
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(outbox::relay(ctx.clone()));
    tasks.spawn(housekeeping::run(ctx.clone()));
    for consumer in Consumer::ALL {
        tasks.spawn(consumer::run(ctx.clone(), consumer));
    }

    let app = api::routes(ctx.clone()).merge(participants::routes(ctx.clone()));
    let app = http::finish(app, registry, "orders", config.max_body)?;

    let (drained_tx, drained_rx) = tokio::sync::oneshot::channel::<()>();
    let drain = tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        while tasks.join_next().await.is_some() {}
        let _ = drained_tx.send(());
    });
    let served = http::serve(listener, app, async {
        let _ = drained_rx.await;
    })
    .await;
    // The server only stops once the drain is done (or the server failed, then stop it too).
    drain.abort();
    served?;
    Ok(())
}

/// `http://ADDR` for this service's own listener (loopback if it listens on all addresses).
fn own_url(addr: SocketAddr) -> String {
    let host = if addr.ip().is_unspecified() {
        match addr {
            SocketAddr::V4(_) => SocketAddr::from(([127, 0, 0, 1], addr.port())),
            SocketAddr::V6(_) => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, addr.port())),
        }
    } else {
        addr
    };
    format!("http://{host}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_url_avoids_unspecified_addresses() {
        assert_eq!(
            own_url("0.0.0.0:8080".parse().unwrap()),
            "http://127.0.0.1:8080"
        );
        assert_eq!(own_url("[::]:81".parse().unwrap()), "http://[::1]:81");
        assert_eq!(
            own_url("127.0.0.1:9".parse().unwrap()),
            "http://127.0.0.1:9"
        );
    }
}
