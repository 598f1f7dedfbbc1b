//! The orders service's own Prometheus metrics (names fixed: the dashboard reads them).

use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Saga outcomes, queue depths, retries and appends.
pub struct OrdersMetrics {
    /// `orders_saga_outcomes_total{outcome}`: completed | compensated | cancelled.
    pub outcomes: IntCounterVec,
    /// `orders_dlq_depth`: messages in the dead-letter table.
    pub dlq_depth: IntGauge,
    /// `orders_outbox_pending`: outbox rows not yet published.
    pub outbox_pending: IntGauge,
    /// `orders_consumer_retries_total{consumer}`: failed attempts that will be retried.
    pub retries: IntCounterVec,
    /// `orders_events_appended_total`: events appended to the store.
    pub appended: IntCounter,
}

impl OrdersMetrics {
    /// Creates the metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let outcomes = IntCounterVec::new(
            Opts::new("orders_saga_outcomes_total", "Sagas finished, by outcome"),
            &["outcome"],
        )?;
        let dlq_depth = IntGauge::new("orders_dlq_depth", "Messages in the dead-letter queue")?;
        let outbox_pending =
            IntGauge::new("orders_outbox_pending", "Outbox rows not yet published")?;
        let retries = IntCounterVec::new(
            Opts::new(
                "orders_consumer_retries_total",
                "Failed message attempts that will be retried, by consumer",
            ),
            &["consumer"],
        )?;
        let appended = IntCounter::new(
            "orders_events_appended_total",
            "Events appended to the event store",
        )?;
        registry.register(Box::new(outcomes.clone()))?;
        registry.register(Box::new(dlq_depth.clone()))?;
        registry.register(Box::new(outbox_pending.clone()))?;
        registry.register(Box::new(retries.clone()))?;
        registry.register(Box::new(appended.clone()))?;
        for outcome in ["completed", "compensated", "cancelled"] {
            outcomes.with_label_values(&[outcome]);
        }
        for consumer in super::queue::Consumer::ALL {
            retries.with_label_values(&[consumer.name()]);
        }
        Ok(Self {
            outcomes,
            dlq_depth,
            outbox_pending,
            retries,
            appended,
        })
    }
}
