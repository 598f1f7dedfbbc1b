//! `meridian origin orders` as a real process, killed between an order's event write and its
//! publish (`--crash-after-append`), then restarted on the same store: the outbox publishes the
//! event after the restart and the order's saga completes.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::*;

/// A running origin process, killed when dropped.
struct Origin {
    child: Child,
    base: String,
}

impl Drop for Origin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Origin {
    /// Starts `meridian origin orders` on a free port with its store in `data`; waits (≤ 20 s)
    /// until `/healthz` answers.
    async fn start(data: &Path, extra: &[&str]) -> Origin {
        let port = free_port();
        let child = Command::new(binary())
            .args(["origin", "orders", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--data")
            .arg(data)
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn meridian origin orders");
        let origin = Origin {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = client();
        for _ in 0..400 {
            if let Ok(res) = http.get(format!("{}/healthz", origin.base)).send().await {
                if res.status() == 200 {
                    return origin;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("orders origin did not come up");
    }

    /// Waits (≤ 10 s) for the process to exit; returns its status.
    async fn exited(&mut self) -> std::process::ExitStatus {
        for _ in 0..500 {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("orders origin did not exit");
    }
}

fn order() -> serde_json::Value {
    serde_json::json!({
        "customer": "grace",
        "address": "7 Compiler Court",
        "items": [{"sku": "ramen", "qty": 1, "price_cents": 1400}]
    })
}

#[tokio::test]
async fn an_order_written_just_before_a_crash_is_delivered_after_restart() {
    let data = tempfile::tempdir().expect("tempdir");
    let http = client();

    let mut doomed = Origin::start(data.path(), &["--crash-after-append"]).await;
    let placed = http
        .post(format!("{}/api/orders", doomed.base))
        .json(&order())
        .send()
        .await;
    assert!(placed.is_err(), "the process answered instead of dying");
    let status = doomed.exited().await;
    assert_eq!(status.signal(), Some(6), "expected SIGABRT, got {status:?}");

    let mut restarted = Origin::start(data.path(), &[]).await;
    let mut completed = serde_json::Value::Null;
    for _ in 0..500 {
        let list = get_json(
            &http,
            &format!("{}/api/orders?status=completed", restarted.base),
        )
        .await;
        if let Some(first) = list["orders"].as_array().and_then(|a| a.first()) {
            completed = first.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(completed["customer"], "grace", "saga did not complete");
    let id = completed["id"].as_str().expect("id");
    let events = get_json(&http, &format!("{}/api/orders/{id}/events", restarted.base)).await;
    let kinds: Vec<&str> = events["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    assert_eq!(
        kinds,
        [
            "OrderPlaced",
            "PaymentCharged",
            "DeliveryScheduled",
            "NotificationSent",
            "OrderCompleted"
        ]
    );
    // Exactly one order: the crash neither lost nor duplicated it.
    let all = get_json(&http, &format!("{}/api/orders", restarted.base)).await;
    assert_eq!(all["orders"].as_array().map(Vec::len), Some(1));

    let term = Command::new("kill")
        .args(["-TERM", &restarted.child.id().to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    assert!(restarted.exited().await.success(), "graceful exit");
}
