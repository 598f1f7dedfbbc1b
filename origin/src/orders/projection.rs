//! The read model (CQRS): each order's events folded into one document in `order_view`, which
//! the query endpoints read. The fold always starts from the whole stream, so handling an event
//! twice, or out of order, gives the same document; an older fold never overwrites a newer one.

use rusqlite::{params, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use super::consumer::HandleError;
use super::events::{Event, Item, Recorded};
use super::queue::Message;
use super::store::{self, StoreResult};
use super::Ctx;

/// The statuses an order can be in.
pub const STATUSES: [&str; 5] = ["placed", "paid", "delivering", "completed", "cancelled"];

/// An order as the queries see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderView {
    /// Order id.
    pub id: String,
    /// placed | paid | delivering | completed | cancelled.
    pub status: String,
    /// Who ordered.
    pub customer: String,
    /// Where to.
    pub address: String,
    /// What.
    pub items: Vec<Item>,
    /// Sum of the items.
    pub total_cents: u64,
    /// Why it was cancelled.
    pub reason: Option<String>,
    /// The payment, once charged.
    pub payment_id: Option<String>,
    /// Whether the payment was refunded.
    pub refunded: bool,
    /// The delivery, once scheduled.
    pub delivery_id: Option<String>,
    /// Minutes to the door, once scheduled.
    pub eta_minutes: Option<u32>,
    /// Notifications sent (`delivery`, `cancelled`).
    pub notifications: Vec<String>,
    /// Every event, in order.
    pub timeline: Vec<Step>,
    /// Version of the last event folded in.
    pub version: i64,
    /// When it was placed (ms since the Unix epoch).
    pub created_at_ms: i64,
    /// When it last changed.
    pub updated_at_ms: i64,
}

/// One entry of an order's timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Step {
    /// The event's kind.
    pub step: String,
    /// When (ms since the Unix epoch).
    pub at_ms: i64,
}

impl OrderView {
    /// Whether the saga is over.
    pub fn settled(&self) -> bool {
        matches!(self.status.as_str(), "completed" | "cancelled")
    }
}

/// Folds an order's events into its view; `None` if the stream does not start with
/// `OrderPlaced`.
pub fn fold(events: &[Recorded]) -> Option<OrderView> {
    let first = events.first()?;
    let Event::OrderPlaced {
        customer,
        address,
        items,
        total_cents,
        ..
    } = &first.event
    else {
        return None;
    };
    let mut view = OrderView {
        id: first.stream_id.clone(),
        status: "placed".into(),
        customer: customer.clone(),
        address: address.clone(),
        items: items.clone(),
        total_cents: *total_cents,
        reason: None,
        payment_id: None,
        refunded: false,
        delivery_id: None,
        eta_minutes: None,
        notifications: Vec::new(),
        timeline: Vec::with_capacity(events.len()),
        version: 0,
        created_at_ms: first.at_ms,
        updated_at_ms: first.at_ms,
    };
    for recorded in events {
        match &recorded.event {
            Event::OrderPlaced { .. } | Event::PaymentFailed { .. } => {}
            Event::DeliveryFailed { .. } | Event::DeliveryCancelled { .. } => {}
            Event::PaymentCharged { payment_id, .. } => {
                view.status = "paid".into();
                view.payment_id = Some(payment_id.clone());
            }
            Event::DeliveryScheduled {
                delivery_id,
                eta_minutes,
            } => {
                view.status = "delivering".into();
                view.delivery_id = Some(delivery_id.clone());
                view.eta_minutes = Some(*eta_minutes);
            }
            Event::PaymentRefunded { .. } => view.refunded = true,
            Event::NotificationSent { about } => view.notifications.push(about.clone()),
            Event::OrderCompleted {} => view.status = "completed".into(),
            Event::OrderCancelled { reason, .. } => {
                view.status = "cancelled".into();
                view.reason = Some(reason.clone());
            }
        }
        view.timeline.push(Step {
            step: recorded.event.kind().into(),
            at_ms: recorded.at_ms,
        });
        view.version = recorded.version;
        view.updated_at_ms = recorded.at_ms;
    }
    Some(view)
}

/// Refolds the order `msg` belongs to into the read model.
pub async fn handle(ctx: &Ctx, msg: &Message) -> Result<(), HandleError> {
    let id = msg.stream_id.clone();
    ctx.store
        .tx(move |tx| {
            let events = store::read_stream(tx, &id)?;
            if let Some(view) = fold(&events) {
                save(tx, &view)?;
            }
            Ok(())
        })
        .await?;
    ctx.view_changed.notify_waiters();
    Ok(())
}

fn save(tx: &Transaction<'_>, view: &OrderView) -> StoreResult<()> {
    tx.execute(
        "INSERT INTO order_view (id, status, version, created_at, doc) VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (id) DO UPDATE SET status = excluded.status, version = excluded.version,
             doc = excluded.doc
         WHERE excluded.version >= order_view.version",
        params![
            view.id,
            view.status,
            view.version,
            view.created_at_ms,
            serde_json::to_string(view)?
        ],
    )?;
    Ok(())
}

/// Order `id` from the read model, or folded from its events if the projection has not seen
/// it yet (so a client can read its own order right after placing it).
pub fn get(tx: &Transaction<'_>, id: &str) -> StoreResult<Option<OrderView>> {
    let doc: Option<String> = tx
        .query_row("SELECT doc FROM order_view WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    match doc {
        Some(doc) => Ok(Some(serde_json::from_str(&doc)?)),
        None => Ok(fold(&store::read_stream(tx, id)?)),
    }
}

/// The newest `limit` orders, of `status` if given.
pub fn list(
    tx: &Transaction<'_>,
    status: Option<&str>,
    limit: usize,
) -> StoreResult<Vec<OrderView>> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut stmt = tx.prepare_cached(
        "SELECT doc FROM order_view WHERE (?1 IS NULL OR status = ?1)
         ORDER BY created_at DESC, id LIMIT ?2",
    )?;
    let docs = stmt.query_map(params![status, limit], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for doc in docs {
        out.push(serde_json::from_str(&doc?)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(version: i64, event: Event) -> Recorded {
        Recorded {
            seq: version,
            stream_id: "ord_1".into(),
            version,
            at_ms: version * 10,
            event,
        }
    }

    #[test]
    fn a_compensated_order_folds_to_cancelled_and_refunded() {
        let events = vec![
            rec(
                1,
                Event::OrderPlaced {
                    customer: "c".into(),
                    address: "a".into(),
                    items: Vec::new(),
                    total_cents: 5,
                    faults: Vec::new(),
                },
            ),
            rec(
                2,
                Event::PaymentCharged {
                    payment_id: "p".into(),
                    amount_cents: 5,
                },
            ),
            rec(3, Event::DeliveryFailed { reason: "r".into() }),
            rec(
                4,
                Event::PaymentRefunded {
                    payment_id: "p".into(),
                    amount_cents: 5,
                },
            ),
            rec(
                5,
                Event::OrderCancelled {
                    reason: "delivery failed: r".into(),
                    compensated: true,
                },
            ),
        ];
        let view = fold(&events).unwrap();
        assert_eq!(view.status, "cancelled");
        assert!(view.refunded);
        assert_eq!(view.version, 5);
        assert_eq!(view.timeline.len(), 5);
        assert_eq!(view.updated_at_ms, 50);
        assert!(view.settled());
        assert!(fold(&events[1..]).is_none());
    }
}
