//! The notifier: tells the customer that the order is on its way (`DeliveryScheduled`) or was
//! cancelled (`OrderCancelled`), and records it as `NotificationSent`, which the saga waits for
//! to complete the order. A notification already recorded is not sent again.
//!
//! Its fault, `notify=poison` (per order) or `{"notify": {"fail": true}}` (table), fails every
//! attempt, so the message ends in the dead-letter queue. Replaying it lifts the order's
//! per-order faults, so the replay succeeds unless the fault table still says fail.

use super::consumer::HandleError;
use super::events::Event;
use super::queue::Message;
use super::store;
use super::Ctx;

/// Appends lost to concurrent appends before the attempt counts as failed.
const RACES: usize = 3;

/// Sends the notification for the event `msg` carries.
pub async fn handle(ctx: &Ctx, msg: &Message) -> Result<(), HandleError> {
    for _ in 0..RACES {
        let id = msg.stream_id.clone();
        let stream = ctx.store.tx(move |tx| store::read_order(tx, &id)).await?;
        let about = match stream
            .events
            .iter()
            .find(|e| e.seq == msg.event_seq)
            .map(|e| &e.event)
        {
            Some(Event::DeliveryScheduled { .. }) => "delivery",
            Some(Event::OrderCancelled { .. }) => "cancelled",
            _ => return Ok(()),
        };
        let already = stream
            .events
            .iter()
            .any(|e| matches!(&e.event, Event::NotificationSent { about: sent } if sent == about));
        if already {
            return Ok(());
        }
        if ctx.faults.notify_poisoned(&stream.faults) {
            return Err(HandleError::Failed(
                "notification channel refused the message (injected fault)".into(),
            ));
        }
        log::info!(
            "orders: notified the customer of {}: {about}",
            msg.stream_id
        );
        let sent = Event::NotificationSent {
            about: about.into(),
        };
        if ctx
            .append(&msg.stream_id, stream.version(), vec![sent])
            .await?
            .is_ok()
        {
            return Ok(());
        }
    }
    Err(HandleError::Failed(format!(
        "order {}: lost {RACES} append races in a row",
        msg.stream_id
    )))
}
