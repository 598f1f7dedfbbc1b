//! Reload under load: zero failed requests; invalid configs refused while traffic flows.

use std::time::Duration;

use crate::harness::*;

fn config(port: u16, a: &Upstream, b: &Upstream, tag: &str, upstream: &str) -> String {
    format!(
        r#"
listeners: [ {{ name: public, address: "127.0.0.1:{port}" }} ]
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: off }}
upstreams:
  a: {{ targets: ["{a}"] }}
  b: {{ targets: ["{b}"] }}
routes:
  - name: all
    match: {{ path_prefix: / }}
    upstream: {upstream}
    response_headers: {{ set: {{ x-generation: "{tag}" }} }}
"#,
        a = a.addr,
        b = b.addr
    )
}

async fn generation_header(port: u16) -> String {
    client()
        .get(format!("http://127.0.0.1:{port}/"))
        .send()
        .await
        .expect("req")
        .headers()
        .get("x-generation")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn wait_generation(port: u16, want: &str) -> bool {
    for _ in 0..200 {
        if generation_header(port).await == want {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread")]
async fn reload_under_load_loses_nothing() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let port = free_port();
    let m = Meridian::start(&config(port, &a, &b, "g0", "a"));
    let load = start_load(port, 8);
    let c = client();
    for i in 1..=6 {
        let up = if i % 2 == 0 { "a" } else { "b" };
        m.write_config(&config(port, &a, &b, &format!("g{i}"), up));
        match i % 3 {
            // the admin API
            0 => {
                let r = c
                    .post(format!("{}/admin/reload", m.admin))
                    .send()
                    .await
                    .expect("reload");
                assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
            }
            // SIGHUP
            1 => m.signal("HUP"),
            // the file watch picks it up by itself
            _ => {}
        }
        assert!(
            wait_generation(port, &format!("g{i}")).await,
            "reload {i} not applied"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, failed) = load.finish().await;
    assert!(ok > 100, "too little traffic to mean anything: {ok}");
    assert_eq!(
        failed,
        0,
        "{failed} of {} requests failed during reloads",
        ok + failed
    );
    assert!(a.hits() > 0 && b.hits() > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_reload_is_refused_and_old_config_keeps_serving() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let port = free_port();
    let m = Meridian::start(&config(port, &a, &b, "good", "a"));
    let load = start_load(port, 4);
    // unknown upstream and an unknown key
    m.write_config(&config(port, &a, &b, "bad", "nowhere").replace("path_prefix", "path_prefx"));
    let r = client()
        .post(format!("{}/admin/reload", m.admin))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 400);
    let v: serde_json::Value = r.json().await.expect("json");
    let errors: Vec<String> = v["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e.as_str().unwrap_or("").to_string())
        .collect();
    assert!(errors.len() >= 2, "{errors:?}");
    assert!(
        errors
            .iter()
            .any(|e| e.contains("meridian.yaml:") && e.contains("path_prefx")),
        "{errors:?}"
    );
    assert!(errors.iter().any(|e| e.contains("nowhere")), "{errors:?}");
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(generation_header(port).await, "good");
    let (ok, failed) = load.finish().await;
    assert_eq!(failed, 0);
    assert!(ok > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn in_flight_requests_finish_on_the_plan_they_started_with() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    a.set_delay(Duration::from_millis(800));
    let port = free_port();
    let m = Meridian::start(&config(port, &a, &b, "old", "a"));
    let slow = tokio::spawn(async move {
        client()
            .get(format!("http://127.0.0.1:{port}/"))
            .send()
            .await
    });
    assert!(
        wait_until(Duration::from_secs(5), || a.hits() == 1),
        "the slow request reached a"
    );
    m.write_config(&config(port, &a, &b, "new", "b"));
    let r = client()
        .post(format!("{}/admin/reload", m.admin))
        .send()
        .await
        .expect("reload");
    assert_eq!(r.status(), 200);
    assert_eq!(
        generation_header(port).await,
        "new",
        "new requests use the new plan"
    );
    let old = slow.await.expect("task").expect("slow request");
    assert_eq!(old.status(), 200);
    assert_eq!(old.headers()["x-upstream"], "a");
    assert_eq!(
        old.headers()["x-generation"],
        "old",
        "the in-flight request kept its plan"
    );
}
