//! The URL shortener as its own process (`meridian origin urls`): SIGTERM writes every
//! counted click to the store before the process exits.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{binary, client, free_port, get_json, raw_get, wait_until};

/// A running `meridian origin urls`, killed if the test ends early.
struct Shortener {
    child: Child,
    base: String,
}

impl Drop for Shortener {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Shortener {
    /// Starts it over `data` with a flush interval no test outlasts, so only the shutdown
    /// flush can write clicks; waits (≤ 10 s) for `/healthz`.
    fn start(data: &Path) -> Shortener {
        let addr = format!("127.0.0.1:{}", free_port());
        let child = Command::new(binary())
            .args(["origin", "urls", "--listen", &addr, "--data"])
            .arg(data)
            .args(["--flush-interval-ms", "3600000"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn meridian origin urls");
        let mut s = Shortener {
            child,
            base: format!("http://{addr}"),
        };
        let up = wait_until(Duration::from_secs(10), || {
            raw_get(&addr, "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        assert!(up && s.running(), "the shortener did not come up");
        s
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Sends SIGTERM and waits (≤ 10 s) for a successful exit.
    fn terminate(&mut self) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "kill -TERM");
        assert!(
            wait_until(Duration::from_secs(10), || !self.running()),
            "still running 10 s after SIGTERM"
        );
        let status = self.child.wait().expect("exit status");
        assert!(status.success(), "exited with {status}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_writes_every_counted_click() {
    let data = tempfile::tempdir().expect("tempdir");
    let c = client();
    let mut svc = Shortener::start(data.path());
    let created: Value = c
        .post(format!("{}/api/urls", svc.base))
        .json(&json!({ "url": "https://example.com/landing" }))
        .send()
        .await
        .expect("create")
        .json()
        .await
        .expect("create JSON");
    let code = created["code"].as_str().expect("code").to_string();
    for _ in 0..25 {
        let r = c
            .get(format!("{}/r/{code}", svc.base))
            .send()
            .await
            .expect("redirect");
        assert_eq!(r.status(), 301);
    }
    let metrics = c
        .get(format!("{}/metrics", svc.base))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.lines().any(|l| l == "urls_clicks_pending 25"),
        "the clicks should still be pending:\n{metrics}"
    );
    svc.terminate();

    let svc = Shortener::start(data.path());
    let stats = get_json(&c, &format!("{}/api/urls/{code}", svc.base)).await;
    assert_eq!(stats["clicks"], 25, "{stats}");
    assert_eq!(stats["url"], "https://example.com/landing");
}
