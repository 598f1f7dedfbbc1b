//! The demo platform end to end: `meridian stack` run from the shipped configs
//! (conf/stack.yaml, conf/stack/*.yaml) moved to free ports, driven through the gateway the way
//! the README's "Try it" walks a newcomer through it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::harness::{binary, free_port, get_json, raw_get, test_clip, wait_until};

/// The addresses in the shipped stack configs, by role.
const SHIPPED: [(&str, &str); 7] = [
    ("gateway", "127.0.0.1:8080"),
    ("edge", "127.0.0.1:8081"),
    ("gateway_admin", "127.0.0.1:9901"),
    ("edge_admin", "127.0.0.1:9902"),
    ("urls", "127.0.0.1:9101"),
    ("orders", "127.0.0.1:9102"),
    ("video", "127.0.0.1:9103"),
];
const STACK_FILES: [&str; 3] = ["stack.yaml", "stack/gateway.yaml", "stack/edge.yaml"];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A running `meridian stack`; stopped with SIGTERM when dropped.
struct Stack {
    child: Child,
    dir: tempfile::TempDir,
    addr: HashMap<&'static str, String>,
}

impl Stack {
    /// Copies the shipped stack configs with every address moved to a free port (and
    /// `tweak` applied to the stack file), starts the stack and waits until the gateway, the
    /// last process it starts, is ready.
    fn start(tweak: impl Fn(String) -> String) -> Stack {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr: HashMap<&'static str, String> = SHIPPED
            .iter()
            .map(|(role, _)| (*role, format!("127.0.0.1:{}", free_port())))
            .collect();
        for name in STACK_FILES {
            let mut text = std::fs::read_to_string(repo().join("conf").join(name)).expect("conf");
            for (role, shipped) in SHIPPED {
                text = text.replace(shipped, &addr[role]);
            }
            if name == "stack.yaml" {
                text = tweak(text);
            }
            let path = dir.path().join("conf").join(name);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(path, text).expect("write conf");
        }
        let log = std::fs::File::create(dir.path().join("stack.log")).expect("log");
        let child = Command::new(binary())
            .args(["stack", "-c"])
            .arg(dir.path().join("conf/stack.yaml"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn the stack");
        let mut stack = Stack { child, dir, addr };
        let admin = stack.addr["gateway_admin"].clone();
        let up = wait_until(Duration::from_secs(120), || {
            matches!(stack.child.try_wait(), Ok(Some(_)))
                || raw_get(&admin, "/readyz").is_some_and(|r| r.starts_with("HTTP/1.1 200"))
        });
        assert!(
            up && stack.child.try_wait().ok().flatten().is_none(),
            "the stack did not come up:\n{}",
            stack.log()
        );
        stack
    }

    fn url(&self, role: &str, path: &str) -> String {
        format!("http://{}{path}", self.addr[role])
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stack.log")).unwrap_or_default()
    }

    /// SIGTERM, then the exit status (bounded wait).
    fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let mut status = None;
        wait_until(Duration::from_secs(60), || {
            status = self.child.try_wait().ok().flatten();
            status.is_some()
        });
        status
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.stop().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A client that does not follow redirects (a redirect is what the shortener answers).
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn cache_status(r: &reqwest::Response) -> String {
    r.headers()
        .get("cache-status")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

/// The stack file with a two-rung ladder small enough for a test machine.
fn small_ladder(text: String) -> String {
    let start = text.find("    ladder:\n").expect("a ladder in stack.yaml");
    let end = text[start..]
        .find("\n\n")
        .map_or(text.len(), |i| start + i + 1);
    format!(
        "{}    ladder:\n      - {{ name: 144p, height: 144, video_kbps: 150, audio_kbps: 32 }}\n      - {{ name: 240p, height: 240, video_kbps: 300, audio_kbps: 48 }}\n{}",
        &text[..start],
        &text[end..]
    )
}

async fn shorten_follow_and_count(stack: &Stack, c: &reqwest::Client) {
    let created = c
        .post(stack.url("gateway", "/api/urls"))
        .json(&serde_json::json!({ "url": "https://example.com/menu", "alias": "menu" }))
        .send()
        .await
        .expect("shorten");
    assert_eq!(created.status(), 201);
    let link: serde_json::Value = created.json().await.expect("json");
    assert_eq!(link["short_url"], stack.url("gateway", "/r/menu"));

    // The first redirect is filled from the shortener, the next ones are edge hits.
    let first = c
        .get(stack.url("gateway", "/r/menu"))
        .send()
        .await
        .expect("r");
    assert_eq!(first.status(), 301);
    assert_eq!(first.headers()["location"], "https://example.com/menu");
    assert!(
        cache_status(&first).contains("fwd="),
        "{}",
        cache_status(&first)
    );
    for _ in 0..5 {
        let again = c
            .get(stack.url("gateway", "/r/menu"))
            .send()
            .await
            .expect("r");
        assert_eq!(again.status(), 301);
        assert!(
            cache_status(&again).contains("hit"),
            "{}",
            cache_status(&again)
        );
    }
    // Only the redirect the shortener answered is a click; it is counted in a batch.
    let stats = get_json(c, &stack.url("gateway", "/api/urls/menu")).await;
    assert_eq!(stats["clicks"], 1, "{stats}");

    let taken = c
        .post(stack.url("gateway", "/api/urls"))
        .json(&serde_json::json!({ "url": "https://example.com/other", "alias": "menu" }))
        .send()
        .await
        .expect("shorten");
    assert_eq!(taken.status(), 409);
    let unknown = c
        .get(stack.url("gateway", "/r/nope123"))
        .send()
        .await
        .expect("r");
    assert_eq!(unknown.status(), 404);
}

async fn place_order(stack: &Stack, c: &reqwest::Client, fault: Option<&str>) -> serde_json::Value {
    let mut req = c
        .post(stack.url("gateway", "/api/orders"))
        .json(&serde_json::json!({
            "customer": "ada", "address": "1 Main St",
            "items": [{ "sku": "margherita", "qty": 2, "price_cents": 1250 }]
        }));
    if let Some(f) = fault {
        req = req.header("x-fault", f);
    }
    let placed = req.send().await.expect("order");
    assert_eq!(placed.status(), 202);
    let id = placed.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    // Long-poll (5 s per call, inside the gateway's read timeout) until the saga settles.
    let mut view = serde_json::Value::Null;
    for _ in 0..12 {
        view = get_json(
            c,
            &stack.url("gateway", &format!("/api/orders/{id}?wait=5s")),
        )
        .await;
        if view["status"] == "completed" || view["status"] == "cancelled" {
            return view;
        }
    }
    panic!("order {id} did not settle: {view}\n{}", stack.log());
}

async fn orders_saga(stack: &Stack, c: &reqwest::Client) {
    let ok = place_order(stack, c, None).await;
    assert_eq!(ok["status"], "completed", "{ok}");
    let no_pay = place_order(stack, c, Some("payment=fail")).await;
    assert_eq!(no_pay["status"], "cancelled", "{no_pay}");
    assert!(no_pay["delivery_id"].is_null(), "{no_pay}");
    let no_delivery = place_order(stack, c, Some("delivery=fail")).await;
    assert_eq!(no_delivery["status"], "cancelled", "{no_delivery}");
    assert_eq!(no_delivery["refunded"], true, "compensated: {no_delivery}");
    let metrics = c
        .get(stack.url("orders", "/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("orders_saga_outcomes_total{outcome=\"compensated\"} 1"),
        "{metrics}"
    );
}

async fn upload_transcode_play(stack: &Stack, c: &reqwest::Client) {
    let clip = test_clip(stack.dir.path());
    let body = std::fs::read(&clip).expect("clip");
    let up = c
        .post(stack.url("gateway", "/api/videos?title=demo"))
        .body(body)
        .send()
        .await
        .expect("upload");
    assert_eq!(up.status(), 202);
    let id = up.json::<serde_json::Value>().await.expect("json")["id"]
        .as_str()
        .expect("id")
        .to_string();
    let status_url = stack.url("gateway", &format!("/api/videos/{id}"));
    let mut status = serde_json::Value::Null;
    for _ in 0..600 {
        status = get_json(c, &status_url).await;
        if status["status"] == "ready" || status["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(status["status"], "ready", "{status}");

    let master = stack.url("gateway", &format!("/videos/{id}/master.m3u8"));
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_type",
            "-of",
            "csv=p=0",
        ])
        .arg(&master)
        .output()
        .expect("ffprobe runs");
    let streams = String::from_utf8_lossy(&probe.stdout);
    assert!(
        probe.status.success() && streams.contains("video"),
        "{streams}"
    );

    // ffprobe's reads filled the edge: a segment is now served from its cache.
    let playlist = c
        .get(stack.url("gateway", &format!("/videos/{id}/144p/index.m3u8")))
        .send()
        .await
        .expect("playlist")
        .text()
        .await
        .expect("text");
    let segment = playlist
        .lines()
        .find(|l| l.ends_with(".ts"))
        .expect("a segment")
        .to_string();
    let seg_url = stack.url("gateway", &format!("/videos/{id}/144p/{segment}"));
    let _ = c.get(&seg_url).send().await.expect("segment");
    let hit = c.get(&seg_url).send().await.expect("segment");
    assert_eq!(hit.status(), 200);
    assert!(cache_status(&hit).contains("hit"), "{}", cache_status(&hit));
    assert!(hit.headers()["cache-control"]
        .to_str()
        .unwrap_or("")
        .contains("immutable"));
}

/// The gateway's dashboard scrapes every process of the stack and sees the sagas run.
async fn dashboard_sees_the_platform(stack: &Stack, c: &reqwest::Client) {
    let url = stack.url("gateway_admin", "/admin/dashboard");
    let mut seen = serde_json::Value::Null;
    for _ in 0..100 {
        seen = get_json(c, &url).await;
        let sources = seen["sources"].as_array().cloned().unwrap_or_default();
        let up = sources.iter().filter(|s| s["up"] == true).count();
        let orders = sources.iter().find(|s| s["name"] == "orders");
        let completed = orders.map_or(0, |o| o["panel"]["saga"]["completed"].as_u64().unwrap_or(0));
        if up == 4 && completed >= 1 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("the dashboard does not show the platform: {seen}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_end_to_end() {
    let mut stack = Stack::start(small_ladder);
    let c = client();
    shorten_follow_and_count(&stack, &c).await;
    orders_saga(&stack, &c).await;
    dashboard_sees_the_platform(&stack, &c).await;
    upload_transcode_play(&stack, &c).await;
    let status = stack.stop().expect("the stack stops on SIGTERM");
    assert!(status.success(), "{status:?}\n{}", stack.log());
    // Every process went with it: nothing answers on the origins' ports.
    for role in ["urls", "orders", "video", "edge", "gateway"] {
        assert!(
            raw_get(&stack.addr[role], "/healthz").is_none(),
            "{role} still up"
        );
    }
}

#[test]
fn the_stack_stops_when_one_of_its_processes_dies() {
    let mut stack = Stack::start(|t| t);
    let pattern = format!("origin orders -c {}", stack.dir.path().display());
    let killed = Command::new("pkill")
        .args(["-KILL", "-f", &pattern])
        .status()
        .expect("pkill")
        .success();
    assert!(killed, "found the orders process");
    let mut status = None;
    wait_until(Duration::from_secs(60), || {
        status = stack.child.try_wait().ok().flatten();
        status.is_some()
    });
    let status = status.expect("the stack exited");
    assert!(!status.success());
    assert!(stack.log().contains("orders exited"), "{}", stack.log());
    for role in ["urls", "video", "edge", "gateway"] {
        assert!(
            raw_get(&stack.addr[role], "/healthz").is_none(),
            "{role} still up"
        );
    }
}

#[test]
fn example_configs_pass_check() {
    let conf = repo().join("conf");
    let mut files: Vec<PathBuf> = Vec::new();
    for dir in [conf.clone(), conf.join("stack")] {
        for entry in std::fs::read_dir(&dir).expect("conf dir") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") && !path.ends_with("stack.yaml") {
                files.push(path);
            }
        }
    }
    for path in &files {
        let out = Command::new(binary())
            .args(["check", "-c"])
            .arg(path)
            .output()
            .expect("meridian check");
        assert!(
            out.status.success(),
            "{}: {}",
            path.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let names: Vec<String> = files
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for want in ["edge.yaml", "gateway.yaml", "shield.yaml"] {
        assert!(
            names.iter().filter(|n| *n == want).count() >= 1,
            "{want} in {names:?}"
        );
    }
    let out = Command::new(binary())
        .args(["stack", "--check", "-c"])
        .arg(conf.join("stack.yaml"))
        .output()
        .expect("meridian stack --check");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_bad_stack_file_is_refused_with_its_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("stack.yaml");
    std::fs::write(
        &bad,
        "data: d\ngateway: g.yaml\nedge: e.yaml\norigins:\n  urls: { listen: 127.0.0.1:1 }\n  orders: { listen: 127.0.0.1:2 }\n  video:\n    listen: 127.0.0.1:3\n    max_upload: lots\n",
    )
    .expect("write");
    let out = Command::new(binary())
        .args(["stack", "--check", "-c"])
        .arg(&bad)
        .output()
        .expect("meridian stack --check");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("stack.yaml:9:5: origins.video.max_upload"),
        "{err}"
    );
}
