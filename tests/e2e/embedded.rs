//! The embedded example, built by cargo with the tests, runs and serves with its plugin.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

fn example_binary() -> std::path::PathBuf {
    // target/<profile>/deps/e2e-<hash> → target/<profile>/examples/embedded
    let exe = std::env::current_exe().expect("test binary path");
    let profile_dir = exe
        .parent()
        .and_then(|d| d.parent())
        .expect("target profile dir");
    profile_dir.join("examples").join("embedded")
}

#[tokio::test(flavor = "multi_thread")]
async fn embedded_example_serves_with_its_plugin() {
    let bin = example_binary();
    assert!(
        bin.exists(),
        "{} missing: cargo builds examples with the tests",
        bin.display()
    );
    let up = Upstream::start("origin").await;
    let (port, admin) = (free_port(), free_port());
    let mut child = Command::new(&bin)
        .args([
            format!("127.0.0.1:{port}"),
            up.addr.to_string(),
            format!("127.0.0.1:{admin}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn example");
    let ready = wait_until(Duration::from_secs(30), || {
        raw_get(&format!("127.0.0.1:{admin}"), "/readyz").is_some_and(|r| status_of(&r) == 200)
    });
    let result = async {
        assert!(ready, "embedded example never became ready");
        let r = client()
            .get(format!("http://127.0.0.1:{port}/hi"))
            .send()
            .await
            .expect("req");
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["x-stamp"], "hello");
        assert_eq!(r.headers()["x-upstream"], "origin");
    }
    .await;
    let _ = child.kill();
    let _ = child.wait();
    result
}
