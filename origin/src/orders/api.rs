//! The orders API: place an order (validated, idempotent), read the read model and the event
//! stream, list orders, the dead-letter queue (list, replay) and the fault table.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::events::{Event, Item};
use super::faults::{self, FaultTable};
use super::idempotency::{self, Prior};
use super::projection::{self, OrderView, STATUSES};
use super::queue;
use super::store::{self, now_ms, StoreError};
use super::Ctx;
use crate::http::{ApiError, Json};

/// Items per order.
const MAX_ITEMS: usize = 50;
/// Units per item.
const MAX_QTY: u32 = 100;
/// Price of one unit, in cents.
const MAX_PRICE: u64 = 10_000_000;
/// Orders or dead letters per list.
const MAX_LIST: usize = 500;
/// Default list length.
const DEFAULT_LIST: usize = 50;
/// Longest long poll (`?wait=`).
const MAX_WAIT: Duration = Duration::from_secs(10);

/// The API's routes.
pub fn routes(ctx: Arc<Ctx>) -> Router {
    Router::new()
        .route("/api/orders", post(place).get(list))
        .route("/api/orders/dlq", get(dead_letters))
        .route("/api/orders/dlq/{id}/replay", post(replay))
        .route("/api/orders/faults", get(get_faults).post(set_faults))
        .route("/api/orders/{id}", get(order))
        .route("/api/orders/{id}/events", get(events))
        .with_state(ctx)
}

/// `POST /api/orders`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PlaceOrder {
    customer: String,
    items: Vec<Item>,
    address: String,
}

fn text_field(name: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.trim().is_empty() || value.chars().count() > max {
        return Err(ApiError::bad_request(format!(
            "{name} must be 1-{max} characters"
        )));
    }
    if value.chars().any(char::is_control) {
        return Err(ApiError::bad_request(format!(
            "{name} must not contain control characters"
        )));
    }
    Ok(())
}

impl PlaceOrder {
    /// Checks the order; returns its total.
    fn validate(&self) -> Result<u64, ApiError> {
        text_field("customer", &self.customer, 100)?;
        text_field("address", &self.address, 300)?;
        if self.items.is_empty() || self.items.len() > MAX_ITEMS {
            return Err(ApiError::bad_request(format!(
                "items must hold 1-{MAX_ITEMS} entries"
            )));
        }
        let mut total = 0u64;
        for item in &self.items {
            text_field("sku", &item.sku, 64)?;
            if !(1..=MAX_QTY).contains(&item.qty) {
                return Err(ApiError::bad_request(format!("qty must be 1-{MAX_QTY}")));
            }
            if item.price_cents > MAX_PRICE {
                return Err(ApiError::bad_request(format!(
                    "price_cents must be at most {MAX_PRICE}"
                )));
            }
            total += u64::from(item.qty) * item.price_cents;
        }
        Ok(total)
    }
}

/// What placing an order came to.
enum Placed {
    Created(String),
    Replayed { status: StatusCode, body: String },
}

async fn place(
    State(ctx): State<Arc<Ctx>>,
    headers: HeaderMap,
    Json(req): Json<PlaceOrder>,
) -> Result<Response, ApiError> {
    let total = req.validate()?;
    let order_faults = match headers.get(faults::HEADER) {
        None => Vec::new(),
        Some(_) if !ctx.faults.enabled() => return Err(faults::disabled()),
        Some(value) => faults::parse_header(value.to_str().unwrap_or_default())
            .map_err(ApiError::bad_request)?,
    };
    let key = idempotency::key(&headers)?;
    let canonical = serde_json::to_string(&req).map_err(ApiError::internal)?;
    let fingerprint = idempotency::fingerprint(&[&canonical, &order_faults.join(",")]);
    let id = format!("ord_{:016x}", rand::random::<u64>());
    let body = json!({ "id": id, "status": "placed" }).to_string();
    let placed = Event::OrderPlaced {
        customer: req.customer,
        address: req.address,
        items: req.items,
        total_cents: total,
        faults: order_faults,
    };
    let ttl_ms = i64::try_from(ctx.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
    let max_backlog = i64::from(ctx.max_backlog);
    let crash = ctx.crash_after_append;
    let outcome = ctx
        .store
        .tx_then(
            move |tx| {
                let now = now_ms();
                if let Some(key) = &key {
                    match idempotency::check(tx, key, &fingerprint, now, ttl_ms)? {
                        Prior::New => {}
                        Prior::Replay { status, body } => {
                            return Ok(Ok(Placed::Replayed { status, body }))
                        }
                        Prior::Mismatch => {
                            return Ok(Err(ApiError::new(
                                StatusCode::UNPROCESSABLE_ENTITY,
                                "Idempotency-Key was already used with a different request",
                            )))
                        }
                    }
                }
                if queue::backlog(tx)? >= max_backlog {
                    return Ok(Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "too many orders in flight, try again later",
                    )));
                }
                if store::append(tx, &id, 0, &[placed])?.is_err() {
                    return Err(StoreError::Corrupt(format!("order id {id} already used")));
                }
                if let Some(key) = &key {
                    idempotency::remember(tx, key, &fingerprint, StatusCode::ACCEPTED, &body, now)?;
                }
                Ok(Ok(Placed::Created(id)))
            },
            move |outcome| {
                if crash && matches!(outcome, Ok(Placed::Created(_))) {
                    log::error!("orders: crash_after_append set, aborting after the commit");
                    std::process::abort();
                }
            },
        )
        .await
        .map_err(ApiError::internal)??;
    match outcome {
        Placed::Created(id) => {
            ctx.metrics.appended.inc();
            ctx.relay_wake.notify_one();
            Ok(accepted(
                StatusCode::ACCEPTED,
                json!({ "id": id, "status": "placed" }).to_string(),
                false,
            ))
        }
        Placed::Replayed { status, body } => Ok(accepted(status, body, true)),
    }
}

/// The answer to a placed order: `body` with its `Location` (and `Idempotent-Replayed`).
fn accepted(status: StatusCode, body: String, replayed: bool) -> Response {
    let id = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v.get("id")?.as_str().map(str::to_string));
    let mut response = (status, [(header::CONTENT_TYPE, "application/json")], body).into_response();
    if let Some(location) =
        id.and_then(|id| HeaderValue::from_str(&format!("/api/orders/{id}")).ok())
    {
        response.headers_mut().insert(header::LOCATION, location);
    }
    if replayed {
        response
            .headers_mut()
            .insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    response
}

/// Order ids look like `ord_` and 16 hex digits; anything else is unknown.
fn known_shape(id: &str) -> Result<(), ApiError> {
    let hex = id.strip_prefix("ord_").unwrap_or_default();
    if hex.len() == 16 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(ApiError::not_found("no such order"))
    }
}

/// `?wait=`: `2s`, `1500ms` or `2` (seconds), at most 10 s.
fn parse_wait(value: &str) -> Result<Duration, ApiError> {
    let bad = || ApiError::bad_request("wait must look like 2s, 1500ms or 2 (at most 10s)");
    let (number, unit_ms) = if let Some(ms) = value.strip_suffix("ms") {
        (ms, 1)
    } else if let Some(s) = value.strip_suffix('s') {
        (s, 1000)
    } else {
        (value, 1000)
    };
    let n: u64 = number.parse().map_err(|_| bad())?;
    let wait = Duration::from_millis(n.checked_mul(unit_ms).ok_or_else(bad)?);
    if wait > MAX_WAIT {
        return Err(bad());
    }
    Ok(wait)
}

/// Query of `GET /api/orders/{id}`.
#[derive(Deserialize)]
struct OrderQuery {
    wait: Option<String>,
}

async fn order(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
    Query(query): Query<OrderQuery>,
) -> Result<axum::Json<OrderView>, ApiError> {
    known_shape(&id)?;
    let wait = query.wait.as_deref().map(parse_wait).transpose()?;
    let deadline = tokio::time::Instant::now() + wait.unwrap_or_default();
    loop {
        let changed = ctx.view_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        let read = id.clone();
        let view = ctx
            .store
            .tx(move |tx| projection::get(tx, &read))
            .await
            .map_err(ApiError::internal)?;
        let settled = view.as_ref().is_some_and(OrderView::settled);
        if settled || tokio::time::Instant::now() >= deadline {
            return view
                .map(axum::Json)
                .ok_or_else(|| ApiError::not_found("no such order"));
        }
        let _ = tokio::time::timeout_at(deadline, changed).await;
    }
}

/// One event of `GET /api/orders/{id}/events`.
#[derive(Serialize)]
struct EventOut {
    seq: i64,
    version: i64,
    kind: &'static str,
    data: Value,
    at_ms: i64,
}

async fn events(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    known_shape(&id)?;
    let read = id.clone();
    let events = ctx
        .store
        .tx(move |tx| store::read_stream(tx, &read))
        .await
        .map_err(ApiError::internal)?;
    if events.is_empty() {
        return Err(ApiError::not_found("no such order"));
    }
    let out: Vec<EventOut> = events
        .into_iter()
        .map(|e| EventOut {
            seq: e.seq,
            version: e.version,
            kind: e.event.kind(),
            data: serde_json::to_value(&e.event)
                .ok()
                .and_then(|mut v| v.get_mut("data").map(Value::take))
                .unwrap_or(Value::Null),
            at_ms: e.at_ms,
        })
        .collect();
    Ok(axum::Json(json!({ "id": id, "events": out })))
}

/// Query of the lists.
#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    limit: Option<String>,
}

fn parse_limit(limit: Option<&str>) -> Result<usize, ApiError> {
    match limit {
        None => Ok(DEFAULT_LIST),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_LIST).contains(&n) => Ok(n),
            _ => Err(ApiError::bad_request(format!("limit must be 1-{MAX_LIST}"))),
        },
    }
}

async fn list(
    State(ctx): State<Arc<Ctx>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let status = match query.status {
        Some(s) if !STATUSES.contains(&s.as_str()) => {
            return Err(ApiError::bad_request(format!(
                "status must be one of {}",
                STATUSES.join(", ")
            )))
        }
        other => other,
    };
    let orders = ctx
        .store
        .tx(move |tx| projection::list(tx, status.as_deref(), limit))
        .await
        .map_err(ApiError::internal)?;
    Ok(axum::Json(json!({ "orders": orders })))
}

async fn dead_letters(
    State(ctx): State<Arc<Ctx>>,
    Query(query): Query<ListQuery>,
) -> Result<axum::Json<Value>, ApiError> {
    let limit = parse_limit(query.limit.as_deref())?;
    let (letters, depth) = ctx
        .store
        .tx(move |tx| Ok((queue::dead_letters(tx, limit)?, queue::dead_depth(tx)?)))
        .await
        .map_err(ApiError::internal)?;
    ctx.metrics.dlq_depth.set(depth);
    Ok(axum::Json(
        json!({ "depth": depth, "dead_letters": letters }),
    ))
}

async fn replay(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let unknown = || ApiError::not_found("no such dead letter");
    let id: i64 = id.parse().map_err(|_| unknown())?;
    let (consumer, depth) = ctx
        .store
        .tx(move |tx| Ok((queue::replay(tx, id, now_ms())?, queue::dead_depth(tx)?)))
        .await
        .map_err(ApiError::internal)?;
    ctx.metrics.dlq_depth.set(depth);
    let consumer = consumer.ok_or_else(unknown)?;
    ctx.wake(consumer).notify_one();
    Ok((
        StatusCode::ACCEPTED,
        axum::Json(json!({ "id": id, "consumer": consumer.name(), "status": "queued" })),
    ))
}

async fn get_faults(State(ctx): State<Arc<Ctx>>) -> Result<axum::Json<FaultTable>, ApiError> {
    if !ctx.faults.enabled() {
        return Err(faults::disabled());
    }
    Ok(axum::Json(ctx.faults.table()))
}

async fn set_faults(
    State(ctx): State<Arc<Ctx>>,
    Json(table): Json<FaultTable>,
) -> Result<axum::Json<FaultTable>, ApiError> {
    ctx.faults.set(table)?;
    Ok(axum::Json(ctx.faults.table()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_parse_and_are_bounded() {
        assert_eq!(parse_wait("2s").unwrap(), Duration::from_secs(2));
        assert_eq!(parse_wait("1500ms").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_wait("3").unwrap(), Duration::from_secs(3));
        assert!(parse_wait("11s").is_err());
        assert!(parse_wait("-1").is_err());
        assert!(parse_wait("99999999999999999999s").is_err());
    }

    #[test]
    fn only_order_shaped_ids_are_looked_up() {
        assert!(known_shape("ord_0123456789abcdef").is_ok());
        assert!(known_shape("../etc/passwd").is_err());
        assert!(known_shape("ord_0123").is_err());
    }
}
