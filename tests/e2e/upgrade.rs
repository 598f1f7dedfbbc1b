//! Zero-downtime binary upgrade: a second `meridian run --upgrade` takes the listening sockets
//! over from the first (pingora's hand-over on `SIGQUIT`) while clients keep sending.

use std::process::{Command, Stdio};
use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_hands_sockets_over_without_failures() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let mut old = Meridian::start(&with_listener(
        port,
        &format!(
            r#"
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
            up = up.addr
        ),
    ));
    let load = start_load(port, 4);
    assert!(wait_until(Duration::from_secs(5), || load.ok() > 50));

    let stderr = old.dir.path().join("new-stderr.log");
    let mut new = Command::new(binary())
        .args(["run", "--upgrade", "-c"])
        .arg(&old.config)
        .stdout(Stdio::null())
        .stderr(Stdio::from(std::fs::File::create(&stderr).expect("stderr")))
        .spawn()
        .expect("spawn new meridian");
    // The new process waits on the upgrade socket; the old one sends its sockets on SIGQUIT.
    assert!(wait_until(Duration::from_secs(10), || old
        .dir
        .path()
        .join("upgrade.sock")
        .exists()));
    old.signal("QUIT");
    let old_exited = wait_until(Duration::from_secs(20), || !old.running());
    let served_before = load.ok();
    assert!(wait_until(Duration::from_secs(10), || load.ok() > served_before + 50));
    let (_, failed) = load.finish().await;
    let still_new = matches!(new.try_wait(), Ok(None));
    let _ = new.kill();
    let _ = new.wait();
    assert!(
        old_exited,
        "the old process did not exit after the hand-over"
    );
    assert!(
        still_new,
        "the new process died: {}",
        std::fs::read_to_string(&stderr).unwrap_or_default()
    );
    assert_eq!(failed, 0, "requests failed during the upgrade");
}
