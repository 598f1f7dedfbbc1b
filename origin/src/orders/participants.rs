//! The saga's participants, payment and delivery, served by this same service and called by
//! the saga over HTTP (so, in the stack, through the gateway and its circuit breaker). Each
//! keeps a ledger keyed by order id, which makes every call idempotent: charging an order
//! twice charges it once, refunding twice refunds once. Undoing what never happened (a refund
//! before any charge) answers 404 and leaves a tombstone, so the original call, if it lands
//! late after a timeout, is refused with 409 instead of taking effect. Faults apply here.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::post;
use axum::Router;
use http::{HeaderMap, StatusCode};
use rusqlite::{params, OptionalExtension};
use serde::Deserialize;
use serde_json::{json, Value};

use super::faults::{self, Participant};
use super::store::now_ms;
use super::Ctx;
use crate::http::{ApiError, Json};

/// Largest amount a payment may be, in cents.
const MAX_AMOUNT: u64 = 1_000_000_000_000;

/// The participants' routes.
pub fn routes(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/api/payments/charge", post(charge))
        .route("/api/payments/refund", post(refund))
        .route("/api/deliveries", post(schedule))
        .route("/api/deliveries/cancel", post(cancel))
        .with_state(ctx)
}

/// `POST /api/payments/charge`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChargeRequest {
    order_id: String,
    amount_cents: u64,
}

/// `POST /api/deliveries`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScheduleRequest {
    order_id: String,
    address: String,
}

/// `POST /api/payments/refund`, `POST /api/deliveries/cancel`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UndoRequest {
    order_id: String,
}

fn check_order_id(id: &str) -> Result<(), ApiError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ApiError::bad_request(
            "order_id must be 1-64 letters, digits, '_' or '-'",
        ))
    }
}

/// The call's `X-Fault` entries (ignored when faults are disabled).
fn call_faults(ctx: &Ctx, headers: &HeaderMap) -> Result<Vec<String>, ApiError> {
    match headers.get(faults::HEADER) {
        Some(value) if ctx.faults.enabled() => {
            let value = value
                .to_str()
                .map_err(|_| ApiError::bad_request("X-Fault is not ASCII"))?;
            faults::parse_header(value).map_err(ApiError::bad_request)
        }
        _ => Ok(Vec::new()),
    }
}

async fn charge(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Json(req): Json<ChargeRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    check_order_id(&req.order_id)?;
    if req.amount_cents > MAX_AMOUNT {
        return Err(ApiError::bad_request("amount_cents is too large"));
    }
    let faults = call_faults(&ctx, &headers)?;
    ctx.faults.apply(Participant::Payment, &faults).await?;
    let payment_id = format!("pay_{:016x}", rand::random::<u64>());
    let order_id = req.order_id.clone();
    let amount = i64::try_from(req.amount_cents).unwrap_or(i64::MAX);
    let (payment_id, charged, state): (String, i64, String) = ctx
        .store
        .tx(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO payments (order_id, payment_id, amount_cents, state, updated_at)
                 VALUES (?1, ?2, ?3, 'charged', ?4)",
                params![order_id, payment_id, amount, now_ms()],
            )?;
            Ok(tx.query_row(
                "SELECT payment_id, amount_cents, state FROM payments WHERE order_id = ?1",
                [&order_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await
        .map_err(ApiError::internal)?;
    match state.as_str() {
        "charged" if charged == amount => {}
        "charged" => {
            return Err(ApiError::conflict(
                "order already charged a different amount",
            ))
        }
        "voided" => return Err(ApiError::conflict("order was voided, not charged")),
        _ => return Err(ApiError::conflict("payment already refunded")),
    }
    Ok(axum::Json(json!({
        "payment_id": payment_id,
        "order_id": req.order_id,
        "amount_cents": charged,
        "state": state,
    })))
}

async fn refund(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<UndoRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    check_order_id(&req.order_id)?;
    ctx.faults.apply(Participant::Payment, &[]).await?;
    let order_id = req.order_id.clone();
    let found: Option<(String, i64)> = ctx
        .store
        .tx(move |tx| {
            let now = now_ms();
            tx.execute(
                "UPDATE payments SET state = 'refunded', updated_at = ?2
                 WHERE order_id = ?1 AND state = 'charged'",
                params![order_id, now],
            )?;
            // No payment yet: leave a tombstone, so a charge still on its way (its call timed
            // out) is refused when it lands instead of charging a cancelled order.
            tx.execute(
                "INSERT OR IGNORE INTO payments (order_id, payment_id, amount_cents, state, updated_at)
                 VALUES (?1, '', 0, 'voided', ?2)",
                params![order_id, now],
            )?;
            Ok(tx
                .query_row(
                    "SELECT payment_id, amount_cents FROM payments
                     WHERE order_id = ?1 AND state = 'refunded'",
                    [&order_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?)
        })
        .await
        .map_err(ApiError::internal)?;
    let (payment_id, amount) =
        found.ok_or_else(|| ApiError::not_found("no payment for this order"))?;
    Ok(axum::Json(json!({
        "payment_id": payment_id,
        "order_id": req.order_id,
        "amount_cents": amount,
        "state": "refunded",
    })))
}

async fn schedule(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Json(req): Json<ScheduleRequest>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    check_order_id(&req.order_id)?;
    if req.address.trim().is_empty() || req.address.len() > 300 {
        return Err(ApiError::bad_request("address must be 1-300 bytes"));
    }
    let faults = call_faults(&ctx, &headers)?;
    ctx.faults.apply(Participant::Delivery, &faults).await?;
    let delivery_id = format!("dlv_{:016x}", rand::random::<u64>());
    let eta = 20 + rand::random::<u32>() % 26;
    let order_id = req.order_id.clone();
    let (delivery_id, eta, state): (String, u32, String) = ctx
        .store
        .tx(move |tx| {
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (order_id, delivery_id, eta_minutes, state, updated_at)
                 VALUES (?1, ?2, ?3, 'scheduled', ?4)",
                params![order_id, delivery_id, eta, now_ms()],
            )?;
            Ok(tx.query_row(
                "SELECT delivery_id, eta_minutes, state FROM deliveries WHERE order_id = ?1",
                [&order_id],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )?)
        })
        .await
        .map_err(ApiError::internal)?;
    if state != "scheduled" {
        return Err(ApiError::conflict("delivery was cancelled"));
    }
    Ok((
        StatusCode::CREATED,
        axum::Json(json!({
            "delivery_id": delivery_id,
            "order_id": req.order_id,
            "eta_minutes": eta,
            "state": state,
        })),
    ))
}

async fn cancel(
    State(ctx): State<Arc<Ctx>>,
    Json(req): Json<UndoRequest>,
) -> Result<axum::Json<Value>, ApiError> {
    check_order_id(&req.order_id)?;
    ctx.faults.apply(Participant::Delivery, &[]).await?;
    let order_id = req.order_id.clone();
    let found: Option<String> = ctx
        .store
        .tx(move |tx| {
            let now = now_ms();
            tx.execute(
                "UPDATE deliveries SET state = 'cancelled', updated_at = ?2
                 WHERE order_id = ?1 AND state = 'scheduled'",
                params![order_id, now],
            )?;
            // No delivery yet: a tombstone refuses a scheduling call that lands late.
            tx.execute(
                "INSERT OR IGNORE INTO deliveries (order_id, delivery_id, eta_minutes, state, updated_at)
                 VALUES (?1, '', 0, 'voided', ?2)",
                params![order_id, now],
            )?;
            Ok(tx
                .query_row(
                    "SELECT delivery_id FROM deliveries WHERE order_id = ?1 AND state = 'cancelled'",
                    [&order_id],
                    |r| r.get(0),
                )
                .optional()?)
        })
        .await
        .map_err(ApiError::internal)?;
    let delivery_id = found.ok_or_else(|| ApiError::not_found("no delivery for this order"))?;
    Ok(axum::Json(json!({
        "delivery_id": delivery_id,
        "order_id": req.order_id,
        "state": "cancelled",
    })))
}
