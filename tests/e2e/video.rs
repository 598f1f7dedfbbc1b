//! `meridian origin video` as a real process: a process killed (SIGKILL) in the middle of a
//! transcode keeps its job, and after a restart the job resumes and the ladder is served.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{binary, client, free_port, get_json, raw_get, test_clip, wait_until};

/// A running `meridian origin video`.
struct VideoOrigin {
    child: Child,
    addr: SocketAddr,
}

impl Drop for VideoOrigin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl VideoOrigin {
    /// Starts it on a free port with its data in `data`, using `ffmpeg`; waits (≤ 30 s) for
    /// `/healthz`.
    fn start(data: &Path, ffmpeg: &Path, log: &Path) -> VideoOrigin {
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let child = Command::new(binary())
            .args(["origin", "video", "--listen", &addr.to_string(), "--data"])
            .arg(data)
            .arg("--ffmpeg")
            .arg(ffmpeg)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(log).unwrap()))
            .spawn()
            .expect("spawn meridian origin video");
        let mut origin = VideoOrigin { child, addr };
        let up = wait_until(Duration::from_secs(30), || {
            raw_get(&addr.to_string(), "/healthz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        assert!(
            up && matches!(origin.child.try_wait(), Ok(None)),
            "origin did not come up: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        origin
    }

    fn base(&self) -> String {
        format!("http://{}", self.addr)
    }
}

async fn status(base: &str, id: &str) -> serde_json::Value {
    get_json(&client(), &format!("{base}/api/videos/{id}")).await
}

async fn wait_status(base: &str, id: &str, want: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(base, id).await;
        if s["status"] == want {
            return s;
        }
        assert!(s["status"] != "failed", "{s}");
        assert!(Instant::now() < deadline, "not {want} in time: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn video_job_survives_a_killed_process() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let clip = test_clip(dir.path());
    // An ffmpeg that never finishes and says where it is, so the test can end it.
    let stuck = dir.path().join("stuck-ffmpeg");
    let pid_file = dir.path().join("stuck.pid");
    std::fs::write(
        &stuck,
        format!(
            "#!/bin/sh\necho $$ > '{}'\nexec sleep 30\n",
            pid_file.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o755)).unwrap();

    let mut origin = VideoOrigin::start(&data, &stuck, &dir.path().join("first.log"));
    let base = origin.base();
    let r = client()
        .post(format!("{base}/api/videos?title=survivor&name=clip.mp4"))
        .body(std::fs::read(&clip).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<serde_json::Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&base, &id, "processing").await;
    assert!(wait_until(Duration::from_secs(10), || pid_file.exists()));

    // Killed outright: no drain, the job is left "processing" in the store.
    origin.child.kill().unwrap();
    origin.child.wait().unwrap();
    drop(origin);
    if let Ok(pid) = std::fs::read_to_string(&pid_file) {
        let _ = Command::new("kill").arg(pid.trim()).status();
    }

    let origin = VideoOrigin::start(&data, Path::new("ffmpeg"), &dir.path().join("second.log"));
    let base = origin.base();
    let s = wait_status(&base, &id, "ready").await;
    assert_eq!(s["attempts"], 2, "the interrupted attempt counts: {s}");
    assert_eq!(s["title"], "survivor");
    let r = client()
        .get(format!("{base}/videos/{id}/master.m3u8"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.text().await.unwrap().contains("240p/index.m3u8"));
    assert_eq!(std::fs::read_dir(data.join("work")).unwrap().count(), 0);
}
