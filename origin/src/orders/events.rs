//! The events of an order's stream. Every state change of an order is one of these, appended
//! to the event store and never changed afterwards.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One line of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Item {
    /// Stock-keeping unit (1..=64 characters).
    pub sku: String,
    /// How many (1..=100).
    pub qty: u32,
    /// Price of one, in cents (0..=10,000,000).
    pub price_cents: u64,
}

/// A state change of an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "data")]
pub enum Event {
    /// The order was accepted; the saga starts here.
    OrderPlaced {
        /// Who ordered.
        customer: String,
        /// Where to deliver.
        address: String,
        /// What was ordered.
        items: Vec<Item>,
        /// Sum of `qty * price_cents`.
        total_cents: u64,
        /// Faults asked for with `X-Fault` (`payment=fail`, …); empty in normal use.
        faults: Vec<String>,
    },
    /// The payment participant charged the customer.
    PaymentCharged {
        /// The participant's payment id.
        payment_id: String,
        /// Amount charged.
        amount_cents: u64,
    },
    /// Charging failed (declined, or the participant kept failing or timing out).
    PaymentFailed {
        /// Why.
        reason: String,
    },
    /// The delivery participant scheduled a courier.
    DeliveryScheduled {
        /// The participant's delivery id.
        delivery_id: String,
        /// Estimated minutes to the door.
        eta_minutes: u32,
    },
    /// Scheduling the delivery failed; the payment must be refunded.
    DeliveryFailed {
        /// Why.
        reason: String,
    },
    /// A delivery that may have been scheduled despite a failed (timed-out) call was cancelled
    /// (the saga's compensation).
    DeliveryCancelled {
        /// The cancelled delivery.
        delivery_id: String,
    },
    /// The payment was refunded (the saga's compensation).
    PaymentRefunded {
        /// The refunded payment.
        payment_id: String,
        /// Amount refunded.
        amount_cents: u64,
    },
    /// The customer was notified.
    NotificationSent {
        /// What about: `delivery` or `cancelled`.
        about: String,
    },
    /// The saga finished: paid, delivering, notified.
    OrderCompleted {},
    /// The saga gave up.
    OrderCancelled {
        /// Why.
        reason: String,
        /// Whether a payment was refunded on the way.
        compensated: bool,
    },
}

impl Event {
    /// The event's kind, as stored in the `kind` column (`OrderPlaced`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::OrderPlaced { .. } => "OrderPlaced",
            Self::PaymentCharged { .. } => "PaymentCharged",
            Self::PaymentFailed { .. } => "PaymentFailed",
            Self::DeliveryScheduled { .. } => "DeliveryScheduled",
            Self::DeliveryFailed { .. } => "DeliveryFailed",
            Self::DeliveryCancelled { .. } => "DeliveryCancelled",
            Self::PaymentRefunded { .. } => "PaymentRefunded",
            Self::NotificationSent { .. } => "NotificationSent",
            Self::OrderCompleted {} => "OrderCompleted",
            Self::OrderCancelled { .. } => "OrderCancelled",
        }
    }

    /// The event's payload, as stored in the `data` column.
    pub fn data(&self) -> Result<String, serde_json::Error> {
        let mut tagged = serde_json::to_value(self)?;
        let data = tagged
            .get_mut("data")
            .map(Value::take)
            .unwrap_or_else(|| Value::Object(Default::default()));
        serde_json::to_string(&data)
    }

    /// The event stored as `kind` and `data`.
    pub fn from_stored(kind: &str, data: &str) -> Result<Self, serde_json::Error> {
        let data: Value = serde_json::from_str(data)?;
        serde_json::from_value(serde_json::json!({ "kind": kind, "data": data }))
    }
}

/// An event as the store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recorded {
    /// Global position (the `seq` primary key).
    pub seq: i64,
    /// The order it belongs to.
    pub stream_id: String,
    /// Position within the order's stream, from 1.
    pub version: i64,
    /// When it was appended, in ms since the Unix epoch.
    pub at_ms: i64,
    /// The event.
    pub event: Event,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_through_kind_and_data() {
        let all = [
            Event::OrderPlaced {
                customer: "ada".into(),
                address: "1 Main St".into(),
                items: vec![Item {
                    sku: "pizza".into(),
                    qty: 2,
                    price_cents: 1250,
                }],
                total_cents: 2500,
                faults: vec!["payment=fail".into()],
            },
            Event::PaymentCharged {
                payment_id: "pay_1".into(),
                amount_cents: 2500,
            },
            Event::OrderCompleted {},
            Event::OrderCancelled {
                reason: "no courier".into(),
                compensated: true,
            },
        ];
        for event in all {
            let data = event.data().unwrap();
            assert_eq!(Event::from_stored(event.kind(), &data).unwrap(), event);
        }
        assert_eq!(Event::OrderCompleted {}.data().unwrap(), "{}");
    }

    #[test]
    fn unknown_kinds_are_an_error_not_a_panic() {
        assert!(Event::from_stored("Nope", "{}").is_err());
        assert!(Event::from_stored("OrderCompleted", "not json").is_err());
    }
}
