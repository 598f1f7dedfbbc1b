//! The admin API: probes, effective config with secrets redacted, token when exposed.

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn config_is_redacted_and_token_guards_admin() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let m = Meridian::start(&format!(
        r#"
listeners: [ {{ name: public, address: "127.0.0.1:{port}" }} ]
admin: {{ address: "{{admin}}", token: "s3cret-token" }}
telemetry: {{ access_log: off }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up = up.addr
    ));
    let c = client();
    assert_eq!(
        c.get(format!("{}/healthz", m.admin))
            .send()
            .await
            .expect("healthz")
            .status(),
        200
    );
    let r = c
        .get(format!("{}/admin/config", m.admin))
        .send()
        .await
        .expect("config");
    assert_eq!(r.status(), 401);
    assert!(r.headers().contains_key("www-authenticate"));
    let r = c
        .get(format!("{}/admin/config", m.admin))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("config");
    assert_eq!(r.status(), 200);
    let text = r.text().await.expect("body");
    assert!(!text.contains("s3cret-token"), "secret leaked: {text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["config"]["admin"]["token"], "<redacted>");
    assert_eq!(v["config"]["routes"][0]["name"], "all");
    let r = c
        .get(format!("{}/nope", m.admin))
        .bearer_auth("s3cret-token")
        .send()
        .await
        .expect("404");
    assert_eq!(r.status(), 404);
}

#[test]
fn check_reports_every_error_with_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = check_fails(
        dir.path(),
        "bad.yaml",
        "listeners:\n  - { name: a, address: \"127.0.0.1:1\" }\nupstreams:\n  u: { targets: [], balance: fastest }\nroutes:\n  - { match: { path_prefix: / }, upstream: missing, colour: red }\n",
    );
    let lines: Vec<&str> = err.lines().filter(|l| l.contains("bad.yaml:")).collect();
    assert!(lines.len() >= 4, "expected 4+ errors:\n{err}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.yaml:4:") && l.contains("fastest")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bad.yaml:6:") && l.contains("colour")),
        "{err}"
    );
    let good = write_file(
        dir.path(),
        "good.yaml",
        "listeners: [ { name: a, address: \"127.0.0.1:1\" } ]\n",
    );
    let out = std::process::Command::new(binary())
        .args(["check", "-c"])
        .arg(&good)
        .output()
        .expect("run check");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = std::process::Command::new(binary())
        .arg("--version")
        .output()
        .expect("version");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("meridian "));
}
