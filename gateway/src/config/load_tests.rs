//! Tests of the whole loader: good configs, a table of bad ones, env substitution, secrets.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::load::load_with_env;
use super::model::*;
use super::{load_file, load_str, ConfigErrors};

/// The first line of most cases: a minimal valid listener.
const L: &str = "listeners: [{ name: p, address: 127.0.0.1:8080 }]\n";

fn env(name: &str) -> Option<String> {
    match name {
        "ADMIN_TOKEN" => Some("s3cr3t-value".to_owned()),
        "API_HOST" => Some("api.internal".to_owned()),
        _ => None,
    }
}

fn load(text: &str) -> Result<Config, ConfigErrors> {
    load_with_env(text, "g.yaml", &env)
}

fn errors(text: &str) -> ConfigErrors {
    match load(text) {
        Ok(cfg) => panic!("expected errors, loaded {cfg:#?}\n--- from:\n{text}"),
        Err(errs) => errs,
    }
}

fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel)
}

/// A fresh directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir =
            std::env::temp_dir().join(format!("meridian-config-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("certs")).expect("temp dir");
        TempDir(dir)
    }

    fn touch(&self, rel: &str) {
        std::fs::write(self.0.join(rel), "placeholder").expect("write");
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn example_gateway_yaml_loads() {
    let cfg = load_file(&repo_file("conf/gateway.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.listeners.len(), 1);
    assert_eq!(cfg.listeners[0].address.to_string(), "127.0.0.1:8080");
    assert_eq!(cfg.admin.address.to_string(), "127.0.0.1:9901");
    let files = &cfg.upstreams["files"];
    assert_eq!(files.targets[0].authority(), "127.0.0.1:9000");
    assert!(cfg.routes.len() >= 2);
    assert!(cfg
        .routes
        .iter()
        .all(|r| r.upstream == RouteUpstream::Single("files".into())));
}

/// Every ```yaml block in docs/CONFIG.md whose first line is `# full config` loads, with the
/// input files it names created next to it.
#[test]
fn full_examples_in_config_md_load() {
    let doc = std::fs::read_to_string(repo_file("docs/CONFIG.md")).expect("docs/CONFIG.md");
    let dir = TempDir::new("docs");
    for f in [
        "certs/default.pem",
        "certs/default.key",
        "certs/a.pem",
        "certs/a.key",
        "certs/ca.pem",
    ] {
        dir.touch(f);
    }
    let file_name = dir.0.join("gateway.yaml").display().to_string();
    let mut found = 0;
    for block in doc.split("```yaml\n").skip(1) {
        let body = block.split("```").next().unwrap_or_default();
        if !body.starts_with("# full config") {
            continue;
        }
        found += 1;
        load_with_env(body, &file_name, &env)
            .unwrap_or_else(|e| panic!("example {found} of docs/CONFIG.md:\n{e}\n---\n{body}"));
    }
    assert!(
        found >= 2,
        "expected at least two full examples, found {found}"
    );
}

#[test]
fn the_spec_sketch_loads_with_every_feature() {
    let dir = TempDir::new("sketch");
    for f in [
        "certs/default.pem",
        "certs/default.key",
        "certs/a.pem",
        "certs/a.key",
        "certs/ca.pem",
    ] {
        dir.touch(f);
    }
    let text = r#"
server: { threads: 4, stall_timeout: 2s, grace_period: 10s, upgrade_sock: /tmp/m.sock, pid_file: /tmp/m.pid, watch_config: false, client_header_timeout: 10s, client_body_timeout: 20s, client_send_timeout: 1500ms }
listeners:
  - { name: public, address: 0.0.0.0:8080, h2c: true }
  - name: tls
    address: 0.0.0.0:8443
    tls:
      cert: certs/default.pem
      key: certs/default.key
      certificates: [ { cert: certs/a.pem, key: certs/a.key, server_names: [a.example.com, "*.B.example.com"] } ]
      http2: true
      client_auth: { ca: certs/ca.pem, required: true }
admin: { address: 0.0.0.0:9901, token: "${ADMIN_TOKEN}" }
upstreams:
  api:
    targets: [127.0.0.1:9101, { address: "${API_HOST}:80", weight: 3 }]
    dns_refresh: 30s
    balance: { algorithm: ketama, key: { header: X-User } }
    health: { http: /healthz, host: api.local, expect: 200-299, interval: 2s, timeout: 1s, unhealthy_after: 3, healthy_after: 2 }
    outlier: { consecutive_5xx: 7, base_ejection: 10s, max_ejection_percent: 20 }
    retries: { attempts: 2, on: [connect_error, timeout, reset, 502, 503], backoff: 25ms..250ms, budget: 20%, budget_min: 3 }
    timeouts: { connect: 1s, read: 10s, write: 10s, total: 30s }
    tls: { sni: api.internal, verify: true, http2: false }
    keepalive: { pool_size: 128, idle_timeout: 60s }
  api2:
    targets: ["[::1]:9102"]
    health: { tcp: true }
    outlier: off
routes:
  - name: urls
    match:
      host: api.example.com
      path: /v1/urls/{code}
      methods: [get, HEAD]
      headers: { X-Env: canary, x-debug: present, x-old: absent, x-ver: "~^v[12]$" }
      query:   { preview: "1" }
    upstream: api
    rewrite: /internal/{code}
    request_headers:  { add: { x-a: "1" }, set: { x-b: "2" }, remove: [X-C] }
    response_headers: { set: { x-served-by: meridian } }
    retry_non_idempotent: false
    access: { allow: [10.0.0.0/8], deny: [10.1.0.0/16] }
    max_body: 1MiB
    plugins:
      - rate_limit: { rate: 100/s }
  - match: { host: ["*.example.com", example.com], path_prefix: /v1/ }
    split: [ { upstream: api, weight: 90 }, { upstream: api2, weight: 10 } ]
    rewrite: { strip_prefix: / }
  - match: { path_regex: "^/v(?P<ver>[0-9]+)/(?P<rest>.*)$" }
    upstream: api2
    rewrite: /{rest}
limits: { max_header_count: 50, max_header_bytes: 32KiB, max_uri_length: 4KiB, max_body: 10MiB, encoded_slash: decode }
telemetry: { access_log: { file: /var/log/m.json }, otlp: { endpoint: "http://127.0.0.1:4318", service_name: edge, sample_ratio: 0.25 } }
access: { allow: [], deny: [192.0.2.1] }
"#;
    let file_name = dir.0.join("gateway.yaml").display().to_string();
    let cfg = load_with_env(text, &file_name, &env).unwrap_or_else(|e| panic!("{e}"));

    assert_eq!(cfg.server.threads, 4);
    assert_eq!(cfg.server.stall_timeout, Duration::from_secs(2));
    assert!(!cfg.server.watch_config);
    let client = cfg.server.client_timeouts;
    assert_eq!(client.header, Duration::from_secs(10));
    assert_eq!(client.body, Duration::from_secs(20));
    assert_eq!(client.send, Duration::from_millis(1500));
    let tls = cfg.listeners[1].tls.as_ref().expect("tls");
    assert_eq!(tls.certificates.len(), 2);
    assert_eq!(tls.certificates[0].cert, dir.0.join("certs/default.pem"));
    assert_eq!(
        tls.certificates[1].server_names,
        vec!["a.example.com".to_owned(), "*.b.example.com".to_owned()]
    );
    assert!(tls.client_auth.as_ref().is_some_and(|c| c.required));
    assert_eq!(
        cfg.admin.token.as_ref().map(Secret::expose),
        Some("s3cr3t-value")
    );

    let api = &cfg.upstreams["api"];
    assert_eq!(api.targets[1].host, "api.internal");
    assert_eq!(api.targets[1].weight, 3);
    assert_eq!(
        api.balance,
        Balance::Ketama {
            key: HashKey::Header("x-user".into())
        }
    );
    assert_eq!(
        api.health.as_ref().map(|h| &h.kind),
        Some(&HealthKind::Http {
            path: "/healthz".into(),
            host: Some("api.local".into()),
            expect: (200, 299)
        })
    );
    assert_eq!(api.outlier.consecutive_5xx, 7);
    assert_eq!(api.retries.attempts, 2);
    assert_eq!(api.retries.on.len(), 5);
    assert!(api.retries.on.contains(&RetryOn::Status(503)));
    assert_eq!(api.retries.backoff_max, Duration::from_millis(250));
    assert_eq!(
        api.tls.as_ref().and_then(|t| t.sni.as_deref()),
        Some("api.internal")
    );
    let api2 = &cfg.upstreams["api2"];
    assert_eq!(api2.targets[0].host, "::1");
    assert!(!api2.outlier.enabled);
    assert_eq!(
        api2.health.as_ref().map(|h| &h.kind),
        Some(&HealthKind::Tcp)
    );

    let urls = &cfg.routes[0];
    assert_eq!(urls.name, "urls");
    assert_eq!(
        urls.matcher.methods,
        vec!["GET".to_owned(), "HEAD".to_owned()]
    );
    assert_eq!(
        urls.matcher.path,
        PathMatch::Template("/v1/urls/{code}".into())
    );
    assert_eq!(urls.matcher.headers[0].name, "x-env");
    assert_eq!(urls.matcher.headers[1].value, ValuePredicate::Present);
    assert_eq!(
        urls.matcher.headers[3].value,
        ValuePredicate::Regex("^v[12]$".into())
    );
    assert_eq!(urls.request_headers.remove, vec!["x-c".to_owned()]);
    assert_eq!(urls.max_body, Some(1024 * 1024));
    assert_eq!(
        urls.plugins[0].settings,
        serde_json::json!({"rate": "100/s"})
    );
    assert_eq!(urls.rewrite, Some(Rewrite::Path("/internal/{code}".into())));
    let split = &cfg.routes[1];
    assert_eq!(split.name, "route-1");
    assert_eq!(
        split.upstream,
        RouteUpstream::Split(vec![("api".into(), 90), ("api2".into(), 10)])
    );
    assert_eq!(split.rewrite, Some(Rewrite::StripPrefix("/".into())));
    assert_eq!(cfg.routes[2].name, "route-2");
    assert_eq!(cfg.limits.encoded_slash, EncodedSlash::Decode);
    assert_eq!(cfg.limits.max_header_bytes, 32 * 1024);
    assert_eq!(
        cfg.telemetry.access_log,
        AccessLog::File("/var/log/m.json".into())
    );
    assert_eq!(
        cfg.telemetry.otlp.as_ref().map(|o| o.sample_ratio),
        Some(0.25)
    );
    assert_eq!(cfg.access.deny[0].prefix_len(), 32);
}

#[test]
fn defaults_fill_a_minimal_config() {
    let cfg = load(L).unwrap_or_else(|e| panic!("{e}"));
    let want = Config {
        listeners: cfg.listeners.clone(),
        ..Config::default()
    };
    assert_eq!(cfg, want);
    let up = load(&format!(
        "{L}upstreams: {{ a: {{ targets: [127.0.0.1:1] }} }}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let target = Target {
        host: "127.0.0.1".into(),
        port: 1,
        weight: 1,
    };
    assert_eq!(up.upstreams["a"], Upstream::with_targets(vec![target]));
}

/// Bad configs → (line, column, part of the message) of the error expected among those reported.
#[test]
fn bad_configs_point_at_the_problem() {
    let up = "upstreams:\n  api:\n    targets: [127.0.0.1:1]\n"; // lines 2-4 after L
    let cases: Vec<(String, usize, usize, &str)> = vec![
        (format!("{L}lisenters: []\n"), 2, 1, "lisenters: unknown key; did you mean \"listeners\"?"),
        ("admin: {}\n".into(), 1, 1, "config: missing required key \"listeners\""),
        ("listeners: []\n".into(), 1, 12, "listeners: expected 1 to 64 listeners, found 0"),
        ("- a\n".into(), 1, 1, "config: expected a mapping, found a list"),
        (format!("{L}{up}    balance: fastest\n"), 5, 14,
         "upstreams.api.balance: unknown value \"fastest\"; expected one of round_robin, weighted, least_conn, ketama, p2c_ewma"),
        (format!("{L}upstreams:\n  api:\n    targets: [{{ address: 127.0.0.1:1, weight: 0 }}]\n"), 4, 47,
         "upstreams.api.targets[0].weight: expected a whole number from 1 to 10000, found \"0\""),
        (format!("{L}upstreams:\n  api:\n    targets: []\n"), 4, 14, "upstreams.api.targets: expected at least one target"),
        (format!("{L}upstreams:\n  api: {{ balance: weighted }}\n"), 3, 8, "upstreams.api: missing required key \"targets\""),
        (format!("{L}upstreams:\n  api:\n    targets: [nohost]\n"), 4, 15, "\"nohost\" is not a valid target"),
        (format!("{L}upstreams:\n  api:\n    targets: [a:1, a:1]\n"), 4, 20, "duplicate target a:1"),
        (format!("{L}{up}    retries: {{ on: [conect_error] }}\n"), 5, 21,
         "unknown retry condition \"conect_error\"; expected one of connect_error, timeout, reset or a status from 400 to 599 (did you mean \"connect_error\"?)"),
        (format!("{L}{up}    retries: {{ on: [200] }}\n"), 5, 21, "status 200 cannot trigger a retry"),
        (format!("{L}{up}    retries: {{ backoff: 250ms..25ms }}\n"), 5, 25, "no larger than the max"),
        (format!("{L}{up}    health: {{ http: /h, tcp: true }}\n"), 5, 13, "expected exactly one of http: /path or tcp: true"),
        (format!("{L}{up}    health: {{ http: /h, expect: 200-600 }}\n"), 5, 33, "not a status range"),
        (format!("{L}{up}    balance: {{ algorithm: ketama, key: {{ header: a, cookie: b }} }}\n"), 5, 40, "expected exactly one of header or cookie"),
        (format!("{L}{up}    timeouts: {{ connect: 0s }}\n"), 5, 26, "expected a duration longer than zero"),
        (format!("{L}server: {{ grace_period: 10 }}\n"), 2, 25, "server.grace_period: \"10\" has no unit"),
        (format!("{L}server: {{ threads: many }}\n"), 2, 20, "server.threads: expected a whole number from 1 to 1024, found \"many\""),
        (format!("{L}server: {{ watch_config: yes }}\n"), 2, 25, "expected true or false, found \"yes\""),
        (format!("{L}server: {{ stall_timeout: 10ms }}\n"), 2, 26, "server.stall_timeout: expected a duration from 100ms to 3600s, found \"10ms\""),
        (format!("{L}server: {{ client_header_timeout: 0s }}\n"), 2, 34,
         "server.client_header_timeout: expected a duration from 1ms to 3600s"),
        (format!("{L}server: {{ client_body_timeout: 2h }}\n"), 2, 32, "expected a duration from 1ms to 3600s"),
        (format!("{L}server: {{ client_send_timeout: 30 }}\n"), 2, 32, "server.client_send_timeout: \"30\" has no unit"),
        (format!("{L}server: {{ client_timeout: 30s }}\n"), 2, 11, "server.client_timeout: unknown key"),
        (format!("{L}server: [1]\n"), 2, 9, "server: expected a mapping, found a list"),
        ("listeners: [{ name: a, address: 127.0.0.1:1 }, { name: a, address: 127.0.0.1:2 }]\n".into(),
         1, 56, "listeners[1].name: duplicate listener name \"a\""),
        ("listeners: [{ name: a, address: 0.0.0.0:1 }, { name: b, address: 127.0.0.1:1 }]\n".into(),
         1, 66, "listeners[1].address: 127.0.0.1:1 collides with listener \"a\""),
        ("listeners: [{ name: a, address: localhost:80 }]\n".into(), 1, 33, "is not a valid address; expected ip:port"),
        ("listeners: [{ name: a }]\n".into(), 1, 13, "listeners[0]: missing required key \"address\""),
        ("listeners: [{ name: a, address: 127.0.0.1:1, tls: { cert: missing.pem, key: missing.key } }]\n".into(),
         1, 59, "listeners[0].tls.cert: file \"missing.pem\" does not exist"),
        ("listeners: [{ name: a, address: 127.0.0.1:1, tls: { http2: true } }]\n".into(),
         1, 51, "expected a certificate (cert and key, or certificates)"),
        (format!("{L}admin: {{ address: 0.0.0.0:9901 }}\n"), 2, 19, "admin token is required"),
        (format!("{L}admin: {{ address: 127.0.0.1:8080 }}\n"), 2, 8, "admin.address: 127.0.0.1:8080 is also used by a listener"),
        (format!("{L}routes:\n  - match: {{ path_prefix: / }}\n    upstream: nope\n"), 4, 15,
         "routes[0].upstream: unknown upstream \"nope\"; defined upstreams: none"),
        (format!("{L}{up}routes:\n  - match: {{ path_prefix: / }}\n    upstream: apu\n"), 7, 15,
         "unknown upstream \"apu\"; did you mean \"api\"? defined upstreams: api"),
        (format!("{L}{up}routes:\n  - match: {{ path_regex: \"(\" }}\n    upstream: api\n"), 6, 26,
         "routes[0].match.path_regex: invalid regular expression"),
        (format!("{L}{up}routes:\n  - match: {{ path: \"/a/{{b}}x\" }}\n    upstream: api\n"), 6, 20, "must be a whole {name} capture"),
        (format!("{L}{up}routes:\n  - match: {{ path: /a, path_prefix: /b }}\n    upstream: api\n"), 6, 12,
         "routes[0].match: expected exactly one of path, path_prefix or path_regex"),
        (format!("{L}{up}routes:\n  - match: {{ path: /a }}\n"), 6, 5, "routes[0]: expected exactly one of upstream or split"),
        (format!("{L}{up}routes:\n  - match: {{ path: /a, methods: [\"GE T\"] }}\n    upstream: api\n"), 6, 34, "\"GE T\" is not a valid HTTP method"),
        (format!("{L}{up}routes:\n  - match: {{ path_prefix: /, host: \"a b\" }}\n    upstream: api\n"), 6, 36, "is not a valid host"),
        (format!("{L}{up}routes:\n  - match: {{ path_prefix: /, headers: {{ \"x y\": a }} }}\n    upstream: api\n"), 6, 41, "routes[0].match.headers.x y: \"x y\" is not a valid header name"),
        (format!("{L}{up}routes:\n  - match: {{ path_prefix: / }}\n    upstream: api\n    request_headers: {{ set: {{ \"bad:name\": a }} }}\n"), 8, 31, "is not a valid header name"),
        (format!("{L}{up}routes:\n  - match: {{ path_prefix: / }}\n    upstream: api\n    access: {{ allow: [10.0.0.0/33] }}\n"), 8, 23, "\"10.0.0.0/33\" is not a valid CIDR"),
        (format!("{L}{up}routes:\n  - match: {{ path: \"/a/{{id}}\" }}\n    upstream: api\n    rewrite: /b/{{code}}\n"), 8, 14, "uses unknown capture {code}; the route's path defines id"),
        (format!("{L}{up}routes:\n  - match: {{ path: /a }}\n    upstream: api\n    rewrite: {{ strip_prefix: / }}\n"), 8, 14, "strip_prefix needs a path_prefix route"),
        (format!("{L}{up}routes:\n  - match: {{ path: /a }}\n    split: [{{ upstream: api, weight: 0 }}]\n"), 7, 38, "weight: expected a whole number from 1"),
        (format!("{L}{up}routes:\n  - match: {{ path: /a }}\n    split: []\n"), 7, 12, "routes[0].split: expected at least one upstream"),
        (format!("{L}{up}routes:\n  - {{ name: x, match: {{ path: /a }}, upstream: api }}\n  - {{ name: x, match: {{ path: /b }}, upstream: api }}\n"), 7, 13, "routes[1].name: duplicate route name \"x\""),
        (format!("{L}{up}routes:\n  - match: {{ path: /a }}\n    upstream: api\n    plugins: [rate_limit]\n"), 8, 15, "expected a single-key mapping"),
        (format!("{L}limits: {{ encoded_slash: drop }}\n"), 2, 26, "unknown value \"drop\"; expected one of reject, keep, decode"),
        (format!("{L}limits: {{ max_body: 10 MiBs }}\n"), 2, 21, "unknown unit \"MiBs\""),
        (format!("{L}telemetry: {{ access_log: json }}\n"), 2, 26, "unknown value \"json\"; expected one of off, stdout"),
        (format!("{L}telemetry: {{ otlp: {{ endpoint: \"grpc://x\" }} }}\n"), 2, 32, "is not an OTLP endpoint"),
        (format!("{L}telemetry: {{ otlp: {{ endpoint: \"http://x\", sample_ratio: 2 }} }}\n"), 2, 58, "expected a number from 0 to 1"),
        (format!("{L}access: {{ deny: [nope] }}\n"), 2, 18, "access.deny[0]: \"nope\" is not a valid CIDR"),
        (format!("{L}admin: {{ token: \"${{MISSING_TOKEN}}\" }}\n"), 2, 17, "environment variable MISSING_TOKEN is not set"),
        (format!("{L}admin: {{ dashboard: {{ sorces: {{}} }} }}\n"), 2, 23, "admin.dashboard.sorces: unknown key; did you mean \"sources\"?"),
        (format!("{L}admin: {{ dashboard: {{ scrape_every: 10ms }} }}\n"), 2, 37, "admin.dashboard.scrape_every: expected a duration from 100ms to 3600s, found \"10ms\""),
        (format!("{L}admin: {{ dashboard: {{ sources: {{ edge: \"https://e:1/metrics\" }} }} }}\n"), 2, 40, "admin.dashboard.sources.edge: \"https://e:1/metrics\" is not a plain-HTTP URL"),
        (format!("{L}admin: {{ dashboard: {{ sources: {{ edge: \"not a url\" }} }} }}\n"), 2, 40, "is not a URL"),
        (format!("{L}admin: {{ dashboard: {{ sources: {{ \"a b\": \"http://e:1/\" }} }} }}\n"), 2, 34, "invalid source name \"a b\""),
        (format!("{L}admin: {{ dashboard: {{ sources: [a] }} }}\n"), 2, 32, "admin.dashboard.sources: expected a mapping, found a list"),
        (format!("{L}server: {{ threads: 1\n"), 3, 1, "YAML syntax error"),
        (format!("{L}server: {{}}\nserver: {{}}\n"), 3, 1, "YAML syntax error: duplicated key"),
    ];
    let mut failures = Vec::new();
    for (text, line, column, want) in &cases {
        let errs = errors(text);
        let hit = errs
            .0
            .iter()
            .any(|e| e.line == *line && e.column == *column && e.message.contains(want));
        if !hit {
            failures.push(format!(
                "want {line}:{column}: …{want}…\n got:\n{errs}\n in:\n{text}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn all_errors_are_reported_in_one_go() {
    let text = "\
listeners:
  - { name: a, address: nowhere }
upstreams:
  api:
    targets: [127.0.0.1:1]
    balance: fastest
    retries: { on: [sometimes] }
routes:
  - match: { path_regex: \"[\" }
    upstream: missing
    request_headers: { set: { \"a b\": x } }
limits: { max_body: lots }
telemetry: { acces_log: off }
";
    let errs = errors(text);
    assert!(errs.0.len() >= 7, "{errs}");
    let shown = errs.to_string();
    for want in [
        "g.yaml:2:25: listeners[0].address:",
        "g.yaml:6:14: upstreams.api.balance: unknown value \"fastest\"",
        "g.yaml:7:21: upstreams.api.retries.on[0]: unknown retry condition \"sometimes\"",
        "g.yaml:9:26: routes[0].match.path_regex: invalid regular expression",
        "g.yaml:10:15: routes[0].upstream: unknown upstream \"missing\"",
        "g.yaml:11:31: routes[0].request_headers.set.a b:",
        "g.yaml:12:21: limits.max_body:",
        "g.yaml:13:14: telemetry.acces_log: unknown key; did you mean \"access_log\"?",
    ] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    assert_eq!(shown.lines().count(), errs.0.len(), "one error per line");
}

#[test]
fn env_substitution_applies_to_values_not_keys() {
    let text = "listeners: [{ name: p, address: \"127.0.0.1:${PORT:-8081}\" }]\n\
                upstreams:\n  \"${API_HOST}\": { targets: [\"${API_HOST}:80\"] }\n";
    let errs = errors(text);
    // The key keeps its literal text, which is not a valid upstream name.
    assert!(
        errs.to_string()
            .contains("upstreams.${API_HOST}: invalid upstream name"),
        "{errs}"
    );
    let cfg = load(&text.replace("\"${API_HOST}\":", "api:")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.listeners[0].address.port(), 8081);
    assert_eq!(cfg.upstreams["api"].targets[0].host, "api.internal");
}

#[test]
fn secrets_are_redacted_in_debug_and_json() {
    let cfg = load(&format!(
        "{L}upstreams: {{ a: {{ targets: [127.0.0.1:1] }} }}\n\
         routes:\n  - match: {{ path_prefix: / }}\n    upstream: a\n    \
         plugins: [ jwt: {{ secret: \"${{ADMIN_TOKEN}}\" }} ]\n\
         admin: {{ address: 0.0.0.0:9901, token: \"${{ADMIN_TOKEN}}\" }}\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    // The values themselves are intact for the code that uses them.
    assert_eq!(
        cfg.admin.token.as_ref().map(Secret::expose),
        Some("s3cr3t-value")
    );
    assert_eq!(cfg.routes[0].plugins[0].settings["secret"], "s3cr3t-value");
    let debug = format!("{cfg:?}");
    let json = serde_json::to_string(&cfg).expect("json");
    for shown in [&debug, &json] {
        assert!(!shown.contains("s3cr3t-value"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }
}

#[test]
fn durations_serialize_in_config_notation() {
    let cfg = load(L).unwrap_or_else(|e| panic!("{e}"));
    let json = serde_json::to_value(&cfg).expect("json");
    assert_eq!(json["server"]["grace_period"], "10s");
    assert_eq!(json["server"]["client_header_timeout"], "1m");
}

#[test]
fn load_file_reports_unreadable_files() {
    let errs = load_file(Path::new("/nonexistent/meridian.yaml")).unwrap_err();
    assert_eq!(errs.0.len(), 1);
    assert!(
        errs.to_string()
            .starts_with("/nonexistent/meridian.yaml:0:0: cannot read"),
        "{errs}"
    );
}

#[test]
fn load_str_reads_the_process_environment() {
    // PATH is set in every test environment; an unset name with a default falls back.
    let text = format!("{L}admin: {{ token: \"${{PATH}}\" }}\n");
    let cfg = load_str(&text, "g.yaml").unwrap_or_else(|e| panic!("{e}"));
    assert!(cfg.admin.token.is_some_and(|t| !t.expose().is_empty()));
}

#[test]
fn dashboard_sources_load_in_order_and_are_bounded() {
    let cfg = load(&format!(
        "{L}admin:\n  dashboard:\n    scrape_every: 500ms\n    sources:\n      \
         orders: \"http://127.0.0.1:9102/metrics\"\n      edge: \"http://127.0.0.1:9902/metrics\"\n"
    ))
    .unwrap_or_else(|e| panic!("{e}"));
    let d = &cfg.admin.dashboard;
    assert_eq!(d.scrape_every, Duration::from_millis(500));
    let names: Vec<&str> = d.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["orders", "edge"]);
    assert_eq!(d.sources[1].url, "http://127.0.0.1:9902/metrics");

    let defaults = load(L).unwrap_or_else(|e| panic!("{e}"));
    assert!(defaults.admin.dashboard.sources.is_empty());
    assert_eq!(
        defaults.admin.dashboard.scrape_every,
        Duration::from_secs(2)
    );

    let many: String = (0..17)
        .map(|i| format!("s{i}: \"http://127.0.0.1:{}/metrics\", ", 9000 + i))
        .collect();
    let errs = errors(&format!(
        "{L}admin: {{ dashboard: {{ sources: {{ {many} }} }} }}\n"
    ));
    assert!(
        errs.to_string()
            .contains("17 sources; at most 16 are accepted"),
        "{errs}"
    );
}
