//! The orders service run in-process on a loopback listener, driven over real HTTP.

use std::time::Duration;

use origin::orders::{run, Config};
use reqwest::StatusCode;
use serde_json::{json, Value};
use tokio::sync::oneshot;

struct Service {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), origin::http::BoxError>>,
    _dir: tempfile::TempDir,
}

/// Starts the service with faults on and short retries, after `tweak`.
async fn start(tweak: impl FnOnce(&mut Config)) -> Service {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::new(dir.path());
    config.faults = true;
    config.retry_base = Duration::from_millis(10);
    config.retry_cap = Duration::from_millis(100);
    config.slow_delay = Duration::from_millis(1500);
    tweak(&mut config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(run(config, listener, async {
        let _ = stopped.await;
    }));
    Service {
        base,
        http: reqwest::Client::new(),
        stop: Some(stop),
        task,
        _dir: dir,
    }
}

impl Service {
    /// `GET path`, answered as JSON.
    async fn get_json(&self, path: &str) -> Value {
        self.http
            .get(self.url(path))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn place(&self, fault: Option<&str>) -> String {
        let mut req = self.http.post(self.url("/api/orders")).json(&order_body());
        if let Some(fault) = fault {
            req = req.header("x-fault", fault);
        }
        let res = req.send().await.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        let location = res.headers()["location"].to_str().unwrap().to_string();
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["status"], "placed");
        let id = body["id"].as_str().unwrap().to_string();
        assert_eq!(location, format!("/api/orders/{id}"));
        id
    }

    /// The order once its saga settled (long poll), failing the test if it does not in time.
    async fn settled(&self, id: &str) -> Value {
        let order: Value = self.get_json(&format!("/api/orders/{id}?wait=8s")).await;
        assert!(
            order["status"] == "completed" || order["status"] == "cancelled",
            "not settled: {order}"
        );
        order
    }

    async fn kinds(&self, id: &str) -> Vec<String> {
        let events: Value = self.get_json(&format!("/api/orders/{id}/events")).await;
        let list = events["events"].as_array().unwrap();
        for (i, e) in list.iter().enumerate() {
            assert_eq!(e["version"], i as i64 + 1, "versions in order: {events}");
        }
        list.iter()
            .map(|e| e["kind"].as_str().unwrap().to_string())
            .collect()
    }

    async fn metric(&self, line_start: &str) -> f64 {
        let text = self
            .http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no metric {line_start} in:\n{text}"))
    }

    /// Polls `check` every 20 ms for up to 8 s.
    async fn eventually<F, Fut>(&self, what: &str, mut check: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(8);
        while tokio::time::Instant::now() < deadline {
            if check().await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("timed out waiting for {what}");
    }

    async fn dead_letters(&self) -> Vec<Value> {
        let body: Value = self.get_json("/api/orders/dlq").await;
        body["dead_letters"].as_array().unwrap().clone()
    }

    /// Shuts down and checks the service drained and returned cleanly.
    async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let result = tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("drained in time")
            .expect("did not panic");
        assert!(result.is_ok(), "run failed: {result:?}");
    }
}

fn order_body() -> Value {
    json!({
        "customer": "ada",
        "address": "1 Analytical Way",
        "items": [
            {"sku": "margherita", "qty": 2, "price_cents": 1250},
            {"sku": "lemonade", "qty": 1, "price_cents": 300}
        ]
    })
}

#[tokio::test]
async fn happy_path_completes_with_events_in_order_and_a_read_model() {
    let svc = start(|_| {}).await;
    let id = svc.place(None).await;
    // Readable at once (folded from its events if the projection has not caught up yet).
    let now = svc
        .http
        .get(svc.url(&format!("/api/orders/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(now.status(), StatusCode::OK);
    let order = svc.settled(&id).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["total_cents"], 2800);
    assert_eq!(order["customer"], "ada");
    assert!(order["payment_id"].as_str().unwrap().starts_with("pay_"));
    assert!(order["delivery_id"].as_str().unwrap().starts_with("dlv_"));
    assert_eq!(order["refunded"], false);
    let steps: Vec<&str> = order["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["step"].as_str().unwrap())
        .collect();
    let expected = [
        "OrderPlaced",
        "PaymentCharged",
        "DeliveryScheduled",
        "NotificationSent",
        "OrderCompleted",
    ];
    assert_eq!(steps, expected);
    assert_eq!(svc.kinds(&id).await, expected);
    assert_eq!(
        svc.metric("orders_saga_outcomes_total{outcome=\"completed\"}")
            .await,
        1.0
    );
    assert_eq!(svc.metric("orders_events_appended_total").await, 5.0);
    let list: Value = svc.get_json("/api/orders?status=completed&limit=10").await;
    assert_eq!(list["orders"][0]["id"], id.as_str());
    svc.eventually("the outbox to drain", || async {
        svc.metric("orders_outbox_pending").await == 0.0
    })
    .await;
    svc.shutdown().await;
}

#[tokio::test]
async fn payment_failure_cancels_without_delivery() {
    let svc = start(|_| {}).await;
    let id = svc.place(Some("payment=fail")).await;
    let order = svc.settled(&id).await;
    assert_eq!(order["status"], "cancelled");
    assert!(order["reason"].as_str().unwrap().contains("payment failed"));
    assert_eq!(order["refunded"], false);
    let kinds = svc.kinds(&id).await;
    assert_eq!(
        kinds[..3],
        ["OrderPlaced", "PaymentFailed", "OrderCancelled"]
    );
    assert!(
        !kinds.iter().any(|k| k.starts_with("Delivery")),
        "{kinds:?}"
    );
    assert_eq!(
        svc.metric("orders_saga_outcomes_total{outcome=\"cancelled\"}")
            .await,
        1.0
    );
    svc.shutdown().await;
}

#[tokio::test]
async fn delivery_failure_refunds_the_payment_and_cancels() {
    let svc = start(|_| {}).await;
    let id = svc.place(Some("delivery=fail")).await;
    let order = svc.settled(&id).await;
    assert_eq!(order["status"], "cancelled");
    assert_eq!(order["refunded"], true);
    assert!(order["reason"]
        .as_str()
        .unwrap()
        .contains("delivery failed"));
    let kinds = svc.kinds(&id).await;
    assert_eq!(
        kinds[..5],
        [
            "OrderPlaced",
            "PaymentCharged",
            "DeliveryFailed",
            "PaymentRefunded",
            "OrderCancelled"
        ]
    );
    assert_eq!(
        svc.metric("orders_saga_outcomes_total{outcome=\"compensated\"}")
            .await,
        1.0
    );
    // The notifier tells the customer about the cancellation.
    svc.eventually("the cancellation notice", || async {
        svc.kinds(&id)
            .await
            .contains(&"NotificationSent".to_string())
    })
    .await;
    svc.shutdown().await;
}

#[tokio::test]
async fn a_slow_payment_times_out_and_its_late_charge_is_refused() {
    let svc = start(|c| {
        c.participant_timeout = Duration::from_millis(400);
        c.step_attempts = 1;
    })
    .await;
    let id = svc.place(Some("payment=slow")).await;
    let order = svc.settled(&id).await;
    assert_eq!(order["status"], "cancelled");
    assert!(order["reason"].as_str().unwrap().contains("no answer"));
    // The timed-out charge lands after the saga voided the payment: refused, not charged.
    let late = svc
        .http
        .post(svc.url("/api/payments/charge"))
        .json(&json!({"order_id": id, "amount_cents": 2800}))
        .send()
        .await
        .unwrap();
    assert_eq!(late.status(), StatusCode::CONFLICT);
    svc.shutdown().await;
}

#[tokio::test]
async fn idempotency_keys_replay_refuse_changes_and_dedupe_concurrent_posts() {
    let svc = start(|_| {}).await;
    let post = |key: &str, body: Value| {
        svc.http
            .post(svc.url("/api/orders"))
            .header("idempotency-key", key)
            .json(&body)
            .send()
    };
    let first = post("k-1", order_body()).await.unwrap();
    assert_eq!(first.status(), StatusCode::ACCEPTED);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    let again = post("k-1", order_body()).await.unwrap();
    assert_eq!(again.status(), StatusCode::ACCEPTED);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let location = again.headers()["location"].to_str().unwrap().to_string();
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_eq!(
        location,
        format!("/api/orders/{}", first["id"].as_str().unwrap())
    );

    let mut changed = order_body();
    changed["address"] = json!("somewhere else");
    let conflict = post("k-1", changed).await.unwrap();
    assert_eq!(conflict.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let reason: Value = conflict.json().await.unwrap();
    assert!(reason["error"]
        .as_str()
        .unwrap()
        .contains("Idempotency-Key"));

    let concurrent = (0..16).map(|_| post("k-2", order_body()));
    let responses = futures_join(concurrent).await;
    let mut ids = std::collections::HashSet::new();
    let mut fresh = 0;
    for res in responses {
        let res = res.unwrap();
        assert_eq!(res.status(), StatusCode::ACCEPTED);
        if res.headers().get("idempotent-replayed").is_none() {
            fresh += 1;
        }
        let body: Value = res.json().await.unwrap();
        ids.insert(body["id"].as_str().unwrap().to_string());
    }
    assert_eq!(ids.len(), 1, "16 concurrent posts made {ids:?}");
    assert_eq!(fresh, 1);
    // Two keys, two orders: nothing else was placed.
    svc.eventually("both orders to settle", || async {
        let list: Value = svc.get_json("/api/orders?status=completed").await;
        list["orders"].as_array().unwrap().len() == 2
    })
    .await;
    let all: Value = svc.get_json("/api/orders").await;
    assert_eq!(all["orders"].as_array().unwrap().len(), 2);
    svc.shutdown().await;
}

/// Runs the futures concurrently, in order of their answers.
async fn futures_join<F, T>(futures: impl Iterator<Item = F>) -> Vec<T>
where
    F: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

#[tokio::test]
async fn a_poison_notification_goes_to_the_dlq_and_its_replay_completes_the_order() {
    let svc = start(|c| c.max_attempts = 3).await;
    let id = svc.place(Some("notify=poison")).await;
    svc.eventually("the poison message in the DLQ", || async {
        svc.dead_letters().await.len() == 1
    })
    .await;
    let dead = svc.dead_letters().await.remove(0);
    assert_eq!(dead["order_id"], id.as_str());
    assert_eq!(dead["consumer"], "notifier");
    assert_eq!(dead["kind"], "DeliveryScheduled");
    assert_eq!(dead["attempts"], 3);
    assert!(dead["last_error"].as_str().unwrap().contains("injected"));
    assert_eq!(svc.metric("orders_dlq_depth").await, 1.0);
    assert!(
        svc.metric("orders_consumer_retries_total{consumer=\"notifier\"}")
            .await
            >= 2.0
    );
    let order: Value = svc.get_json(&format!("/api/orders/{id}")).await;
    assert_eq!(order["status"], "delivering");

    let replay_url = svc.url(&format!("/api/orders/dlq/{}/replay", dead["id"]));
    let replayed = svc.http.post(&replay_url).send().await.unwrap();
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    let order = svc.settled(&id).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(order["notifications"], json!(["delivery"]));
    assert!(svc.dead_letters().await.is_empty());
    assert_eq!(svc.metric("orders_dlq_depth").await, 0.0);
    let gone = svc.http.post(&replay_url).send().await.unwrap();
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    svc.shutdown().await;
}

#[tokio::test]
async fn a_table_fault_dead_letters_until_cleared_then_replay_works() {
    let svc = start(|c| c.max_attempts = 2).await;
    let set = |table: Value| {
        svc.http
            .post(svc.url("/api/orders/faults"))
            .json(&table)
            .send()
    };
    assert_eq!(
        set(json!({"notify": {"fail": true}}))
            .await
            .unwrap()
            .status(),
        StatusCode::OK
    );
    let shown: Value = svc.get_json("/api/orders/faults").await;
    assert_eq!(shown, json!({"notify": {"fail": true}}));
    let id = svc.place(None).await;
    svc.eventually("the message in the DLQ", || async {
        svc.dead_letters().await.len() == 1
    })
    .await;
    assert_eq!(set(json!({})).await.unwrap().status(), StatusCode::OK);
    let dead = svc.dead_letters().await.remove(0);
    let replayed = svc
        .http
        .post(svc.url(&format!("/api/orders/dlq/{}/replay", dead["id"])))
        .send()
        .await
        .unwrap();
    assert_eq!(replayed.status(), StatusCode::ACCEPTED);
    assert_eq!(svc.settled(&id).await["status"], "completed");
    svc.shutdown().await;
}

#[tokio::test]
async fn faults_are_refused_when_disabled() {
    let svc = start(|c| c.faults = false).await;
    let res = svc
        .http
        .post(svc.url("/api/orders"))
        .header("x-fault", "payment=fail")
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::FORBIDDEN);
    let table = svc
        .http
        .post(svc.url("/api/orders/faults"))
        .json(&json!({"payment": {"fail": true}}))
        .send()
        .await
        .unwrap();
    assert_eq!(table.status(), StatusCode::FORBIDDEN);
    svc.shutdown().await;
}

/// Method, path, content type, body, extra headers, expected status.
type Case<'a> = (
    &'a str,
    &'a str,
    Option<&'a str>,
    String,
    Vec<(&'a str, String)>,
    u16,
);

#[tokio::test]
async fn bad_input_gets_4xx_with_a_reason_and_leaves_the_store_working() {
    let svc = start(|_| {}).await;
    let mut many = order_body();
    many["items"] = json!(vec![json!({"sku": "x", "qty": 1, "price_cents": 1}); 51]);
    let with = |field: &str, value: Value| {
        let mut body = order_body();
        body[field] = value;
        body.to_string()
    };
    let item = |item: Value| with("items", json!([item]));
    let json_ct = Some("application/json");
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/orders",
            json_ct,
            "{not json".into(),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            Some("text/plain"),
            order_body().to_string(),
            vec![],
            415,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            "x".repeat(70_000),
            vec![],
            413,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            with("items", json!([])),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            many.to_string(),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            item(json!({"sku": "x", "qty": 0, "price_cents": 1})),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            item(json!({"sku": "x", "qty": 101, "price_cents": 1})),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            item(json!({"sku": "x", "qty": -1, "price_cents": 1})),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            item(json!({"sku": "", "qty": 1, "price_cents": 1})),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            item(json!({"sku": "x", "qty": 1, "price_cents": 100_000_000})),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            with("customer", json!("")),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            with("customer", json!("c".repeat(101))),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            with("address", json!("a\u{0}b")),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            with("extra", json!(1)),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            order_body().to_string(),
            vec![("x-fault", "payment=explode".into())],
            400,
        ),
        (
            "POST",
            "/api/orders",
            json_ct,
            order_body().to_string(),
            vec![("idempotency-key", "k".repeat(129))],
            400,
        ),
        (
            "GET",
            "/api/orders/ord_0000000000000000",
            None,
            String::new(),
            vec![],
            404,
        ),
        (
            "GET",
            "/api/orders/..%2F..%2Fetc%2Fpasswd",
            None,
            String::new(),
            vec![],
            404,
        ),
        (
            "GET",
            "/api/orders/ord_0000000000000000/events",
            None,
            String::new(),
            vec![],
            404,
        ),
        (
            "GET",
            "/api/orders/ord_0000000000000000?wait=99s",
            None,
            String::new(),
            vec![],
            400,
        ),
        (
            "GET",
            "/api/orders?status=bogus",
            None,
            String::new(),
            vec![],
            400,
        ),
        (
            "GET",
            "/api/orders?limit=0",
            None,
            String::new(),
            vec![],
            400,
        ),
        (
            "GET",
            "/api/orders/dlq?limit=100000",
            None,
            String::new(),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders/dlq/999/replay",
            None,
            String::new(),
            vec![],
            404,
        ),
        (
            "POST",
            "/api/orders/dlq/abc/replay",
            None,
            String::new(),
            vec![],
            404,
        ),
        (
            "POST",
            "/api/orders/faults",
            json_ct,
            r#"{"payment": {"explode": true}}"#.into(),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/orders/faults",
            json_ct,
            r#"{"payment": {"delay_ms": 999999}}"#.into(),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/payments/charge",
            json_ct,
            r#"{"order_id": "../x", "amount_cents": 1}"#.into(),
            vec![],
            400,
        ),
        (
            "POST",
            "/api/payments/refund",
            json_ct,
            r#"{"order_id": "nobody"}"#.into(),
            vec![],
            404,
        ),
        ("GET", "/api/nothing-here", None, String::new(), vec![], 404),
    ];
    for (method, path, content_type, body, headers, status) in cases {
        let mut req = svc
            .http
            .request(method.parse().unwrap(), svc.url(path))
            .body(body.clone());
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        for (name, value) in &headers {
            req = req.header(*name, value);
        }
        let res = req.send().await.unwrap();
        let got = res.status().as_u16();
        let text = res.text().await.unwrap();
        assert_eq!(
            got, status,
            "{method} {path} {headers:?} {body:.80} → {text}"
        );
        let reason: Value =
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("not JSON: {text}"));
        assert!(reason["error"].is_string(), "{text}");
    }
    // None of it touched the store: a good order still goes through, and it is the only one.
    let id = svc.place(None).await;
    assert_eq!(svc.settled(&id).await["status"], "completed");
    let all: Value = svc.get_json("/api/orders").await;
    assert_eq!(all["orders"].as_array().unwrap().len(), 1);
    svc.shutdown().await;
}

#[tokio::test]
async fn orders_survive_a_restart_on_the_same_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let first = start(|c| c.data_dir = path.clone()).await;
    let id = first.place(None).await;
    assert_eq!(first.settled(&id).await["status"], "completed");
    first.shutdown().await;
    let second = start(|c| c.data_dir = path.clone()).await;
    let order: Value = second.get_json(&format!("/api/orders/{id}")).await;
    assert_eq!(order["status"], "completed");
    assert_eq!(second.kinds(&id).await.len(), 5);
    second.shutdown().await;
}

#[tokio::test]
async fn participants_are_idempotent_per_order() {
    let svc = start(|_| {}).await;
    let post = |path: &str, body: Value| svc.http.post(svc.url(path)).json(&body).send();
    let charge = json!({"order_id": "ord_direct", "amount_cents": 500});
    let first: Value = post("/api/payments/charge", charge.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let second: Value = post("/api/payments/charge", charge.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["payment_id"], second["payment_id"]);
    let other_amount = post(
        "/api/payments/charge",
        json!({"order_id": "ord_direct", "amount_cents": 501}),
    )
    .await
    .unwrap();
    assert_eq!(other_amount.status(), StatusCode::CONFLICT);
    for _ in 0..2 {
        let refund = post("/api/payments/refund", json!({"order_id": "ord_direct"}))
            .await
            .unwrap();
        assert_eq!(refund.status(), StatusCode::OK);
        let refund: Value = refund.json().await.unwrap();
        assert_eq!(refund["payment_id"], first["payment_id"]);
        assert_eq!(refund["state"], "refunded");
    }
    let recharge = post("/api/payments/charge", charge).await.unwrap();
    assert_eq!(recharge.status(), StatusCode::CONFLICT);

    let delivery = json!({"order_id": "ord_direct", "address": "here"});
    let scheduled = post("/api/deliveries", delivery.clone()).await.unwrap();
    assert_eq!(scheduled.status(), StatusCode::CREATED);
    let scheduled: Value = scheduled.json().await.unwrap();
    let again: Value = post("/api/deliveries", delivery.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(again["delivery_id"], scheduled["delivery_id"]);
    let cancelled = post("/api/deliveries/cancel", json!({"order_id": "ord_direct"}))
        .await
        .unwrap();
    assert_eq!(cancelled.status(), StatusCode::OK);
    let late = post("/api/deliveries", delivery).await.unwrap();
    assert_eq!(late.status(), StatusCode::CONFLICT);
    svc.shutdown().await;
}

#[tokio::test]
async fn a_full_backlog_refuses_new_orders_with_503() {
    let svc = start(|c| c.max_backlog = 0).await;
    let res = svc
        .http
        .post(svc.url("/api/orders"))
        .json(&order_body())
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    let reason: Value = res.json().await.unwrap();
    assert!(reason["error"].as_str().unwrap().contains("try again"));
    let all: Value = svc.get_json("/api/orders").await;
    assert_eq!(all["orders"], json!([]));
    svc.shutdown().await;
}

#[tokio::test]
async fn a_shutdown_mid_saga_drains_and_the_next_run_finishes_the_order() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    let slow = |c: &mut Config| {
        c.data_dir = path.clone();
        c.slow_delay = Duration::from_millis(700);
        c.participant_timeout = Duration::from_secs(3);
    };
    let first = start(slow).await;
    let id = first.place(Some("delivery=slow")).await;
    // Shut down while the saga waits on the slow delivery call.
    first
        .eventually("the payment", || async {
            let order: Value = first.get_json(&format!("/api/orders/{id}")).await;
            order["status"] == "paid"
        })
        .await;
    first.shutdown().await;
    let second = start(|c| c.data_dir = path.clone()).await;
    let order = second.settled(&id).await;
    assert_eq!(order["status"], "completed");
    let kinds = second.kinds(&id).await;
    assert_eq!(
        kinds.iter().filter(|k| *k == "DeliveryScheduled").count(),
        1,
        "{kinds:?}"
    );
    second.shutdown().await;
}
