//! Injected faults, for demonstrating the saga and the gateway's circuit breaker. Off unless
//! the service runs with `faults: true`.
//!
//! Two sources: the fault table (`POST /api/orders/faults`), which applies to every call of a
//! participant, and the per-order `X-Fault` header on `POST /api/orders`, recorded with the
//! order and passed on to that order's forward participant calls (charge, schedule).

use std::sync::RwLock;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

use crate::http::ApiError;

/// The request header naming per-order faults, e.g. `X-Fault: payment=fail`.
pub const HEADER: &str = "x-fault";

/// Longest injected delay the fault table accepts.
const MAX_DELAY_MS: u64 = 60_000;

/// The per-order faults understood in `X-Fault`.
const KNOWN: [&str; 5] = [
    "payment=fail",
    "payment=slow",
    "delivery=fail",
    "delivery=slow",
    "notify=poison",
];

/// Parses an `X-Fault` value: comma-separated entries from `payment=fail|slow`,
/// `delivery=fail|slow`, `notify=poison`. Returns them normalised, sorted, without repeats.
pub fn parse_header(value: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in value.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let entry = entry.to_ascii_lowercase();
        if !KNOWN.contains(&entry.as_str()) {
            return Err(format!(
                "unknown fault, expected one of {}",
                KNOWN.join(", ")
            ));
        }
        if !out.contains(&entry) {
            out.push(entry);
        }
    }
    if out.is_empty() {
        return Err("empty X-Fault".into());
    }
    out.sort();
    Ok(out)
}

/// A participant's faults in the fault table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFault {
    /// Answer 503 to every call.
    #[serde(default)]
    pub fail: bool,
    /// Wait this long before answering (≤ 60000).
    #[serde(default)]
    pub delay_ms: u64,
}

/// The notifier's faults in the fault table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NotifyFault {
    /// Fail every notification (its messages end in the dead-letter queue).
    #[serde(default)]
    pub fail: bool,
}

/// Faults that apply to every call: `{"payment": {...}, "delivery": {...}, "notify": {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultTable {
    /// Payment calls (charge and refund).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payment: Option<StepFault>,
    /// Delivery calls (schedule and cancel).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery: Option<StepFault>,
    /// Notifications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notify: Option<NotifyFault>,
}

/// Which participant a call goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Participant {
    /// `/api/payments/*`.
    Payment,
    /// `/api/deliveries*`.
    Delivery,
}

impl Participant {
    fn name(self) -> &'static str {
        match self {
            Self::Payment => "payment",
            Self::Delivery => "delivery",
        }
    }
}

/// The service's fault switchboard.
pub struct Faults {
    enabled: bool,
    slow: Duration,
    table: RwLock<FaultTable>,
}

impl Faults {
    /// Faults allowed when `enabled`; `slow` is what `X-Fault: …=slow` waits.
    pub fn new(enabled: bool, slow: Duration) -> Self {
        Self {
            enabled,
            slow,
            table: RwLock::new(FaultTable::default()),
        }
    }

    /// Whether faults may be injected at all.
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The fault table now.
    pub fn table(&self) -> FaultTable {
        self.table.read().map(|t| t.clone()).unwrap_or_default()
    }

    /// Replaces the fault table (`{}` clears it).
    pub fn set(&self, table: FaultTable) -> Result<(), ApiError> {
        if !self.enabled {
            return Err(disabled());
        }
        for step in [&table.payment, &table.delivery].into_iter().flatten() {
            if step.delay_ms > MAX_DELAY_MS {
                return Err(ApiError::bad_request("delay_ms must be at most 60000"));
            }
        }
        match self.table.write() {
            Ok(mut t) => {
                *t = table;
                Ok(())
            }
            Err(_) => Err(ApiError::internal("fault table lock poisoned")),
        }
    }

    /// Applies the faults for a call to `participant`: the table's, plus `order_faults` (the
    /// call's `X-Fault`). Waits what they ask, then answers 503 if one says fail.
    pub async fn apply(
        &self,
        participant: Participant,
        order_faults: &[String],
    ) -> Result<(), ApiError> {
        if !self.enabled {
            return Ok(());
        }
        let table = self.table();
        let step = match participant {
            Participant::Payment => table.payment,
            Participant::Delivery => table.delivery,
        }
        .unwrap_or_default();
        let name = participant.name();
        let has = |mode: &str| order_faults.iter().any(|f| *f == format!("{name}={mode}"));
        let mut delay = Duration::from_millis(step.delay_ms);
        if has("slow") {
            delay += self.slow;
        }
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        if step.fail || has("fail") {
            return Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("{name} unavailable (injected fault)"),
            ));
        }
        Ok(())
    }

    /// Whether a notification for an order with `order_faults` must fail.
    pub fn notify_poisoned(&self, order_faults: &[String]) -> bool {
        self.enabled
            && (self.table().notify.is_some_and(|n| n.fail)
                || order_faults.iter().any(|f| f == "notify=poison"))
    }
}

/// The 403 for fault requests to a service that runs without faults.
pub fn disabled() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "fault injection is disabled on this service",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_parse_strictly() {
        assert_eq!(
            parse_header(" Payment=fail , notify=poison,payment=fail").unwrap(),
            ["notify=poison", "payment=fail"]
        );
        assert!(parse_header("payment=explode").is_err());
        assert!(parse_header(" , ").is_err());
        assert!(parse_header("notify=slow").is_err());
    }

    #[tokio::test]
    async fn faults_do_nothing_when_disabled() {
        let faults = Faults::new(false, Duration::from_secs(10));
        let order = vec!["payment=fail".to_string(), "notify=poison".to_string()];
        assert!(faults.apply(Participant::Payment, &order).await.is_ok());
        assert!(!faults.notify_poisoned(&order));
        assert_eq!(faults.set(FaultTable::default()), Err(disabled()));
    }

    #[tokio::test]
    async fn table_and_order_faults_apply_to_their_participant() {
        let faults = Faults::new(true, Duration::from_millis(1));
        let order = vec!["delivery=fail".to_string()];
        assert!(faults.apply(Participant::Payment, &order).await.is_ok());
        let err = faults
            .apply(Participant::Delivery, &order)
            .await
            .unwrap_err();
        assert_eq!(err.status, StatusCode::SERVICE_UNAVAILABLE);
        let table: FaultTable =
            serde_json::from_str(r#"{"payment": {"fail": true}, "notify": {"fail": true}}"#)
                .unwrap();
        faults.set(table).unwrap();
        assert!(faults.apply(Participant::Payment, &[]).await.is_err());
        assert!(faults.notify_poisoned(&[]));
        faults.set(FaultTable::default()).unwrap();
        assert!(faults.apply(Participant::Payment, &[]).await.is_ok());
        let too_slow: Result<FaultTable, _> =
            serde_json::from_str(r#"{"payment": {"delay_ms": 600000}}"#);
        assert!(faults.set(too_slow.unwrap()).is_err());
    }
}
