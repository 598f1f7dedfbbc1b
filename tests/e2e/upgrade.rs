//! Zero-downtime binary upgrade: a second `meridian run --upgrade` takes the listening sockets
//! over from the first (pingora's hand-over on `SIGQUIT`) while clients keep sending.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;

#[tokio::test(flavor = "multi_thread")]
async fn upgrade_hands_sockets_over_without_failures() {
    let up = Upstream::start("up").await;
    let port = free_port();
    let mut old = Meridian::start(&format!(
        r#"
listeners: [ {{ name: public, address: "127.0.0.1:{port}" }} ]
admin: {{ address: "{{admin}}" }}
telemetry: {{ access_log: off }}
upstreams:
  up: {{ targets: ["{up}"] }}
routes:
  - {{ name: all, match: {{ path_prefix: / }}, upstream: up }}
"#,
        up = up.addr
    ));
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            tokio::spawn(async move {
                let c = client();
                for _ in 0..100_000 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    match c.get(format!("http://127.0.0.1:{port}/")).send().await {
                        Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::SeqCst),
                        other => {
                            eprintln!("failed: {other:?}");
                            failed.fetch_add(1, Ordering::SeqCst)
                        }
                    };
                }
            })
        })
        .collect();
    assert!(wait_until(Duration::from_secs(5), || ok
        .load(Ordering::SeqCst)
        > 50));

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
    let served_before = ok.load(Ordering::SeqCst);
    assert!(wait_until(Duration::from_secs(10), || ok
        .load(Ordering::SeqCst)
        > served_before + 50));
    stop.store(true, Ordering::SeqCst);
    for t in load {
        let _ = t.await;
    }
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
    assert_eq!(
        failed.load(Ordering::SeqCst),
        0,
        "requests failed during the upgrade"
    );
}
