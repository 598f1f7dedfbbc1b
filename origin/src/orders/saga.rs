//! The saga orchestrator. Its state is derived from the order's events every time (nothing
//! else is kept, so it is restart-safe); each message makes it take the order's next step:
//!
//! ```text
//! OrderPlaced ─charge─▶ PaymentCharged ─schedule─▶ DeliveryScheduled ─(notifier)─▶
//! NotificationSent ─▶ OrderCompleted
//!     │ charge fails               │ schedule fails
//!     ▼                            ▼
//! PaymentFailed                DeliveryFailed
//!     │ refund (void)              │ cancel delivery, refund
//!     ▼                            ▼
//! OrderCancelled               [DeliveryCancelled] PaymentRefunded OrderCancelled
//! ```
//!
//! A failed or timed-out call may still have taken effect, so both failures compensate: the
//! participant calls are idempotent (keyed by order id + step) and answer 404 when there is
//! nothing to undo. Two handlers racing on one order both compute the same step; the
//! participants' idempotency makes the calls one effect, and the event store's optimistic
//! concurrency lets one append win (the loser re-reads and finds nothing left to do).

use serde_json::{json, Value};

use super::client::CallError;
use super::consumer::HandleError;
use super::events::Event;
use super::queue::Message;
use super::store::{self, OrderStream};
use super::Ctx;

/// Re-reads after losing an append race before the attempt counts as failed.
const RACES: usize = 3;

/// What the events say has happened to an order.
#[derive(Debug, Default)]
struct SagaState {
    placed: Option<Placed>,
    charged: bool,
    payment_failed: Option<String>,
    scheduled: bool,
    delivery_failed: Option<String>,
    notified_delivery: bool,
    finished: bool,
}

#[derive(Debug)]
struct Placed {
    total_cents: u64,
    address: String,
}

/// The order's next step.
#[derive(Debug, PartialEq, Eq)]
enum Next {
    Charge,
    Schedule,
    Compensate { reason: String, delivery: bool },
    Complete,
    Wait,
}

impl SagaState {
    fn derive(stream: &OrderStream) -> Self {
        let mut state = Self::default();
        for recorded in &stream.events {
            match &recorded.event {
                Event::OrderPlaced {
                    total_cents,
                    address,
                    ..
                } => {
                    state.placed = Some(Placed {
                        total_cents: *total_cents,
                        address: address.clone(),
                    });
                }
                Event::PaymentCharged { .. } => state.charged = true,
                Event::PaymentFailed { reason } => state.payment_failed = Some(reason.clone()),
                Event::DeliveryScheduled { .. } => state.scheduled = true,
                Event::DeliveryFailed { reason } => state.delivery_failed = Some(reason.clone()),
                Event::NotificationSent { about } => {
                    state.notified_delivery |= about == "delivery";
                }
                Event::OrderCompleted {} | Event::OrderCancelled { .. } => state.finished = true,
                Event::DeliveryCancelled { .. } | Event::PaymentRefunded { .. } => {}
            }
        }
        state
    }

    fn next(&self) -> Next {
        if self.placed.is_none() || self.finished {
            return Next::Wait;
        }
        if let Some(reason) = &self.payment_failed {
            return Next::Compensate {
                reason: format!("payment failed: {reason}"),
                delivery: false,
            };
        }
        if let Some(reason) = &self.delivery_failed {
            return Next::Compensate {
                reason: format!("delivery failed: {reason}"),
                delivery: true,
            };
        }
        if !self.charged {
            Next::Charge
        } else if !self.scheduled {
            Next::Schedule
        } else if self.notified_delivery {
            Next::Complete
        } else {
            Next::Wait
        }
    }
}

/// Takes the next step of the order `msg` belongs to.
pub async fn handle(ctx: &Ctx, msg: &Message) -> Result<(), HandleError> {
    let id = msg.stream_id.clone();
    for _ in 0..RACES {
        let read = id.clone();
        let stream = ctx.store.tx(move |tx| store::read_order(tx, &read)).await?;
        let state = SagaState::derive(&stream);
        let (events, outcome) = match state.next() {
            Next::Wait => return Ok(()),
            Next::Charge => (charge(ctx, &id, &state, &stream.faults).await?, None),
            Next::Schedule => (schedule(ctx, &id, &state, &stream.faults).await?, None),
            Next::Compensate { reason, delivery } => {
                let events = compensate(ctx, &id, reason, delivery).await?;
                let refunded = events
                    .iter()
                    .any(|e| matches!(e, Event::PaymentRefunded { .. }));
                let outcome = if refunded { "compensated" } else { "cancelled" };
                (events, Some(outcome))
            }
            Next::Complete => (vec![Event::OrderCompleted {}], Some("completed")),
        };
        if ctx.append(&id, stream.version(), events).await?.is_ok() {
            if let Some(outcome) = outcome {
                ctx.metrics.outcomes.with_label_values(&[outcome]).inc();
            }
            return Ok(());
        }
    }
    Err(HandleError::Failed(format!(
        "order {id}: lost {RACES} append races in a row"
    )))
}

/// The per-order faults meant for `participant` (`payment`, `delivery`).
fn faults_for(faults: &[String], participant: &str) -> Vec<String> {
    faults
        .iter()
        .filter(|f| f.split('=').next() == Some(participant))
        .cloned()
        .collect()
}

fn string_field(answer: &Value, field: &str) -> Result<String, HandleError> {
    answer
        .get(field)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| HandleError::Failed(format!("participant answer lacks `{field}`")))
}

fn number_field(answer: &Value, field: &str) -> Result<u64, HandleError> {
    answer
        .get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| HandleError::Failed(format!("participant answer lacks `{field}`")))
}

async fn charge(
    ctx: &Ctx,
    id: &str,
    state: &SagaState,
    faults: &[String],
) -> Result<Vec<Event>, HandleError> {
    let total = state.placed.as_ref().map_or(0, |p| p.total_cents);
    let body = json!({ "order_id": id, "amount_cents": total });
    let key = format!("{id}:charge");
    match ctx
        .client
        .call(
            "/api/payments/charge",
            &key,
            &body,
            &faults_for(faults, "payment"),
        )
        .await
    {
        Ok(answer) => Ok(vec![Event::PaymentCharged {
            payment_id: string_field(&answer, "payment_id")?,
            amount_cents: number_field(&answer, "amount_cents")?,
        }]),
        Err(CallError::Interrupted) => Err(HandleError::Interrupted),
        Err(e) => Ok(vec![Event::PaymentFailed {
            reason: e.to_string(),
        }]),
    }
}

async fn schedule(
    ctx: &Ctx,
    id: &str,
    state: &SagaState,
    faults: &[String],
) -> Result<Vec<Event>, HandleError> {
    let address = state.placed.as_ref().map_or("", |p| p.address.as_str());
    let body = json!({ "order_id": id, "address": address });
    let key = format!("{id}:delivery");
    match ctx
        .client
        .call(
            "/api/deliveries",
            &key,
            &body,
            &faults_for(faults, "delivery"),
        )
        .await
    {
        Ok(answer) => Ok(vec![Event::DeliveryScheduled {
            delivery_id: string_field(&answer, "delivery_id")?,
            eta_minutes: u32::try_from(number_field(&answer, "eta_minutes")?).unwrap_or(u32::MAX),
        }]),
        Err(CallError::Interrupted) => Err(HandleError::Interrupted),
        Err(e) => Ok(vec![Event::DeliveryFailed {
            reason: e.to_string(),
        }]),
    }
}

/// Undoes what may have happened: cancels the delivery (if that step failed) and refunds the
/// payment. A 404 means there was nothing to undo. Any other failure fails the attempt, so the
/// consumer retries it (and dead-letters it if it keeps failing: a refund is never skipped).
async fn compensate(
    ctx: &Ctx,
    id: &str,
    reason: String,
    delivery: bool,
) -> Result<Vec<Event>, HandleError> {
    let body = json!({ "order_id": id });
    let mut events = Vec::new();
    if delivery {
        let key = format!("{id}:delivery-cancel");
        if let Some(answer) = undo(ctx, "/api/deliveries/cancel", &key, &body).await? {
            events.push(Event::DeliveryCancelled {
                delivery_id: string_field(&answer, "delivery_id")?,
            });
        }
    }
    let key = format!("{id}:refund");
    if let Some(answer) = undo(ctx, "/api/payments/refund", &key, &body).await? {
        events.push(Event::PaymentRefunded {
            payment_id: string_field(&answer, "payment_id")?,
            amount_cents: number_field(&answer, "amount_cents")?,
        });
    }
    let compensated = !events.is_empty();
    events.push(Event::OrderCancelled {
        reason,
        compensated,
    });
    Ok(events)
}

/// One compensating call: `Some(answer)` if it undid something, `None` on 404.
async fn undo(
    ctx: &Ctx,
    path: &str,
    key: &str,
    body: &Value,
) -> Result<Option<Value>, HandleError> {
    match ctx.client.call(path, key, body, &[]).await {
        Ok(answer) => Ok(Some(answer)),
        Err(CallError::Rejected { status, .. }) if status == http::StatusCode::NOT_FOUND => {
            Ok(None)
        }
        Err(CallError::Interrupted) => Err(HandleError::Interrupted),
        Err(e) => Err(HandleError::Failed(format!("compensation {path}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::super::events::Recorded;
    use super::*;

    fn stream(events: Vec<Event>) -> OrderStream {
        OrderStream {
            events: (1..)
                .zip(events)
                .map(|(version, event)| Recorded {
                    seq: version,
                    stream_id: "o".into(),
                    version,
                    at_ms: 0,
                    event,
                })
                .collect(),
            faults: Vec::new(),
        }
    }

    fn placed() -> Event {
        Event::OrderPlaced {
            customer: "c".into(),
            address: "a".into(),
            items: Vec::new(),
            total_cents: 100,
            faults: Vec::new(),
        }
    }

    fn next(events: Vec<Event>) -> Next {
        SagaState::derive(&stream(events)).next()
    }

    #[test]
    fn the_happy_path_steps_in_order() {
        let charged = Event::PaymentCharged {
            payment_id: "p".into(),
            amount_cents: 100,
        };
        let scheduled = Event::DeliveryScheduled {
            delivery_id: "d".into(),
            eta_minutes: 30,
        };
        let notified = Event::NotificationSent {
            about: "delivery".into(),
        };
        assert_eq!(next(vec![]), Next::Wait);
        assert_eq!(next(vec![placed()]), Next::Charge);
        assert_eq!(next(vec![placed(), charged.clone()]), Next::Schedule);
        assert_eq!(
            next(vec![placed(), charged.clone(), scheduled.clone()]),
            Next::Wait
        );
        assert_eq!(
            next(vec![
                placed(),
                charged.clone(),
                scheduled.clone(),
                notified.clone()
            ]),
            Next::Complete
        );
        assert_eq!(
            next(vec![
                placed(),
                charged,
                scheduled,
                notified,
                Event::OrderCompleted {}
            ]),
            Next::Wait
        );
    }

    #[test]
    fn failures_compensate_once() {
        let failed = Event::DeliveryFailed {
            reason: "no courier".into(),
        };
        let charged = Event::PaymentCharged {
            payment_id: "p".into(),
            amount_cents: 100,
        };
        assert_eq!(
            next(vec![placed(), charged.clone(), failed.clone()]),
            Next::Compensate {
                reason: "delivery failed: no courier".into(),
                delivery: true
            }
        );
        let cancelled = Event::OrderCancelled {
            reason: "x".into(),
            compensated: true,
        };
        assert_eq!(next(vec![placed(), charged, failed, cancelled]), Next::Wait);
        assert!(matches!(
            next(vec![
                placed(),
                Event::PaymentFailed {
                    reason: "declined".into()
                }
            ]),
            Next::Compensate {
                delivery: false,
                ..
            }
        ));
    }

    #[test]
    fn only_the_participants_faults_are_passed_on() {
        let faults = vec!["delivery=fail".to_string(), "notify=poison".to_string()];
        assert_eq!(faults_for(&faults, "delivery"), ["delivery=fail"]);
        assert!(faults_for(&faults, "payment").is_empty());
    }
}
