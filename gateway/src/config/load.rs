//! Loading a config file: YAML → validated [`Config`], with every error collected.
//!
//! Input files named in the config (certificates, keys, CA bundles) are resolved relative to the
//! config file's directory and must exist.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::{ConfigError, ConfigErrors, Errors};
use super::fields::{
    boolean, choice, duration, duration_within, entries, float, list, non_empty, number, parsed,
    secret, size, size_usize, Fields,
};
use super::model::{
    AccessLog, Admin, Certificate, ClientAuth, ClientTimeouts, Config, Dashboard, EncodedSlash,
    IpAccess, Limits, Listener, ListenerTls, MetricsSource, Otlp, Position, ServerSettings,
    Telemetry,
};
use super::routes::{read_access, read_plugins, read_routes};
use super::upstreams::{read_upstreams, valid_name};
use super::validate;
use super::yaml::{self, Kind, Node};

/// Largest config file accepted.
const MAX_FILE_SIZE: u64 = 4 * 1024 * 1024;
/// Most listeners in one config.
const MAX_LISTENERS: usize = 64;
/// Most certificates on one listener.
const MAX_CERTIFICATES: usize = 1024;
/// Shortest and longest `server.stall_timeout`.
const STALL_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

/// Reads and validates the config file at `path`.
pub fn load_file(path: &Path) -> Result<Config, ConfigErrors> {
    let text = read_file(path)?;
    load_str(&text, &path.display().to_string())
}

/// The text of the config file at `path`, refused (as a whole-file error) when it cannot be
/// read or is larger than the loader accepts.
pub(crate) fn read_file(path: &Path) -> Result<String, ConfigErrors> {
    let whole_file = |message: String| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            column: 0,
            message,
        }])
    };
    let size = std::fs::metadata(path)
        .map_err(|e| whole_file(format!("cannot read the config file: {e}")))?
        .len();
    if size > MAX_FILE_SIZE {
        return Err(whole_file(format!(
            "the config file is {size} bytes; at most {MAX_FILE_SIZE} are accepted"
        )));
    }
    std::fs::read_to_string(path)
        .map_err(|e| whole_file(format!("cannot read the config file: {e}")))
}

/// Parses and validates config `text`; `file_name` is used in error messages and its directory
/// anchors relative input-file paths. `${NAME}` references are taken from the process
/// environment.
pub fn load_str(text: &str, file_name: &str) -> Result<Config, ConfigErrors> {
    load_with_env(text, file_name, &|name| std::env::var(name).ok())
}

/// [`load_str`] with the environment given as a lookup function.
pub(crate) fn load_with_env(
    text: &str,
    file_name: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Config, ConfigErrors> {
    let mut errs = Errors::new(file_name);
    if text.len() as u64 > MAX_FILE_SIZE {
        errs.add(
            Position::default(),
            format!(
                "the config is {} bytes; at most {MAX_FILE_SIZE} are accepted",
                text.len()
            ),
        );
        return Err(errs.finish());
    }
    let base = Path::new(file_name).parent().unwrap_or(Path::new(""));
    let Some(root) = yaml::parse(text, env, &mut errs) else {
        return Err(errs.finish());
    };
    let config = read_config(&root, base, &mut errs);
    match config {
        Some(config) if errs.is_empty() => Ok(config),
        _ => Err(errs.finish()),
    }
}

/// Reads the top level; `None` when the document is not a mapping at all.
fn read_config(root: &Node, base: &Path, errs: &mut Errors) -> Option<Config> {
    let mut f = Fields::open(root, "", errs)?;
    let server = f.get_or("server", ServerSettings::default(), errs, read_server);
    let listeners = f.require("listeners", errs, |n, p, e| read_listeners(n, p, e, base));
    let mut admin_pos = f.pos();
    let admin = f.get_or("admin", Admin::default(), errs, |n, p, e| {
        admin_pos = n.pos;
        read_admin(n, p, e)
    });
    let upstreams = f.get("upstreams", errs, |n, _, e| {
        Some(read_upstreams(n, e, base))
    });
    let declared = upstreams
        .as_ref()
        .map(|u| u.declared.clone())
        .unwrap_or_default();
    let mut routes = f.get_or("routes", Vec::new(), errs, |n, _, e| {
        Some(read_routes(n, &declared, e))
    });
    let limits = f.get_or("limits", Limits::default(), errs, read_limits);
    let telemetry = f.get_or("telemetry", Telemetry::default(), errs, read_telemetry);
    let access = f.get_or("access", IpAccess::default(), errs, read_access);
    let plugins = f.get_or("plugins", Vec::new(), errs, read_plugins);
    let mut cache_pos = f.pos();
    let cache_written = f.has("cache");
    let cache = f.get("cache", errs, |n, p, e| {
        cache_pos = n.pos;
        super::cache::read_storage(n, p, e, base)
    });
    f.finish(errs);
    if let Some(u) = &upstreams {
        super::cache::resolve_shields(&mut routes, &u.valid, cache.as_ref(), errs);
    }
    if !cache_written {
        if let Some(route) = routes.iter().find(|r| r.cache.is_some()) {
            errs.add(
                cache_pos,
                format!(
                    "routes: route {} has cache: but there is no top-level cache: section \
                     (expected cache: {{ memory: 256MiB }} at least)",
                    route.name
                ),
            );
        }
    }
    let listeners = listeners.unwrap_or_default();
    if listeners
        .iter()
        .any(|l| same_port(l.address, admin.address))
    {
        errs.add(
            admin_pos,
            format!(
                "admin.address: {} is also used by a listener; expected a separate port",
                admin.address
            ),
        );
    }
    Some(Config {
        server,
        listeners,
        admin,
        upstreams: upstreams.map(|u| u.valid).unwrap_or_default(),
        routes,
        limits,
        telemetry,
        access,
        plugins,
        cache,
    })
}

/// Whether two bind addresses would collide (same port, and same IP or either unspecified).
fn same_port(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && (a.ip() == b.ip() || a.ip().is_unspecified() || b.ip().is_unspecified())
}

fn path_buf(node: &Node, path: &str, errs: &mut Errors) -> Option<PathBuf> {
    non_empty(node, path, errs).map(PathBuf::from)
}

/// An input file: resolved against `base` when relative, and required to exist.
pub(crate) fn input_file(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    base: &Path,
) -> Option<PathBuf> {
    parsed(node, path, errs, |s| {
        if s.is_empty() {
            return Err("expected a file path".to_owned());
        }
        let resolved = base.join(s);
        if resolved.is_file() {
            Ok(resolved)
        } else {
            Err(format!("file \"{}\" does not exist", resolved.display()))
        }
    })
}

fn read_server(node: &Node, path: &str, errs: &mut Errors) -> Option<ServerSettings> {
    let mut f = Fields::open(node, path, errs)?;
    let d = ServerSettings::default();
    let out = ServerSettings {
        threads: f.get_or("threads", d.threads, errs, |n, p, e| {
            number(n, p, e, 1, 1024)
        }),
        stall_timeout: f.get_or("stall_timeout", d.stall_timeout, errs, |n, p, e| {
            duration_within(n, p, e, STALL_TIMEOUT_RANGE)
        }),
        grace_period: f.get_or("grace_period", d.grace_period, errs, duration),
        upgrade_sock: f.get_or("upgrade_sock", d.upgrade_sock, errs, path_buf),
        pid_file: f.get_or("pid_file", d.pid_file, errs, path_buf),
        watch_config: f.get_or("watch_config", d.watch_config, errs, boolean),
        client_timeouts: ClientTimeouts {
            header: f.get_or(
                "client_header_timeout",
                d.client_timeouts.header,
                errs,
                client_timeout,
            ),
            body: f.get_or(
                "client_body_timeout",
                d.client_timeouts.body,
                errs,
                client_timeout,
            ),
            send: f.get_or(
                "client_send_timeout",
                d.client_timeouts.send,
                errs,
                client_timeout,
            ),
        },
    };
    f.finish(errs);
    Some(out)
}

/// Shortest and longest client timeouts: a client may not hold a connection longer than this
/// per step.
const CLIENT_TIMEOUT_RANGE: (Duration, Duration) =
    (Duration::from_millis(1), Duration::from_secs(3600));

/// A client timeout, within [`CLIENT_TIMEOUT_RANGE`].
fn client_timeout(node: &Node, path: &str, errs: &mut Errors) -> Option<Duration> {
    duration_within(node, path, errs, CLIENT_TIMEOUT_RANGE)
}

fn read_listeners(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    base: &Path,
) -> Option<Vec<Listener>> {
    let items = list(node, path, errs)?;
    if items.is_empty() || items.len() > MAX_LISTENERS {
        errs.add(
            node.pos,
            format!(
                "{path}: expected 1 to {MAX_LISTENERS} listeners, found {}",
                items.len()
            ),
        );
        return None;
    }
    let mut out: Vec<Listener> = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let item_path = format!("{path}[{i}]");
        let Some((listener, name_pos, address_pos)) = read_listener(item, &item_path, errs, base)
        else {
            continue;
        };
        if out.iter().any(|l| l.name == listener.name) {
            errs.add(
                name_pos,
                format!(
                    "{item_path}.name: duplicate listener name \"{}\"",
                    listener.name
                ),
            );
            continue;
        }
        if let Some(other) = out.iter().find(|l| same_port(l.address, listener.address)) {
            errs.add(
                address_pos,
                format!(
                    "{item_path}.address: {} collides with listener \"{}\" ({})",
                    listener.address, other.name, other.address
                ),
            );
            continue;
        }
        out.push(listener);
    }
    Some(out)
}

/// Reads one listener; also returns where its name and address are.
fn read_listener(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    base: &Path,
) -> Option<(Listener, Position, Position)> {
    let mut f = Fields::open(node, path, errs)?;
    let (mut name_pos, mut address_pos) = (f.pos(), f.pos());
    let name = f.require("name", errs, |n, p, e| {
        name_pos = n.pos;
        parsed(n, p, e, |s| valid_name("listener", s))
    });
    let address = f.require("address", errs, |n, p, e| {
        address_pos = n.pos;
        parsed(n, p, e, validate::socket_addr)
    });
    let h2c = f.get_or("h2c", false, errs, boolean);
    let tls = f.get("tls", errs, |n, p, e| read_listener_tls(n, p, e, base));
    let tls_written = f.has("tls");
    let pos = f.pos();
    f.finish(errs);
    if h2c && tls_written {
        errs.add(
            pos,
            format!("{path}.h2c: h2c is for plain listeners; TLS listeners offer HTTP/2 by ALPN (tls.http2)"),
        );
        return None;
    }
    if tls_written && tls.is_none() {
        return None;
    }
    let listener = Listener {
        name: name?,
        address: address?,
        tls,
        h2c,
    };
    Some((listener, name_pos, address_pos))
}

fn read_listener_tls(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    base: &Path,
) -> Option<ListenerTls> {
    let mut f = Fields::open(node, path, errs)?;
    let file = |n: &Node, p: &str, e: &mut Errors| input_file(n, p, e, base);
    let cert = f.get("cert", errs, file);
    let key = f.get("key", errs, file);
    let shorthand = (f.has("cert"), f.has("key"));
    let certificates = f.get_or("certificates", Vec::new(), errs, |n, p, e| {
        let items = list(n, p, e)?;
        if items.len() > MAX_CERTIFICATES {
            e.add(
                n.pos,
                format!("{p}: at most {MAX_CERTIFICATES} certificates are allowed"),
            );
            return None;
        }
        Some(
            items
                .iter()
                .enumerate()
                .filter_map(|(i, item)| read_certificate(item, &format!("{p}[{i}]"), e, base))
                .collect(),
        )
    });
    let http2 = f.get_or("http2", true, errs, boolean);
    let client_auth = f.get("client_auth", errs, |n, p, e| {
        let mut f = Fields::open(n, p, e)?;
        let ca = f.require("ca", e, |n, p, e| input_file(n, p, e, base));
        let required = f.get_or("required", true, e, boolean);
        f.finish(e);
        Some(ClientAuth { ca: ca?, required })
    });
    let client_auth_written = f.has("client_auth");
    let has_certificates = f.has("certificates");
    let pos = f.pos();
    f.finish(errs);

    let mut all = Vec::with_capacity(certificates.len() + 1);
    match shorthand {
        (true, true) => all.push(Certificate {
            cert: cert?,
            key: key?,
            server_names: Vec::new(),
        }),
        (false, false) => {}
        _ => {
            errs.add(pos, format!("{path}: cert and key must be given together"));
            return None;
        }
    }
    all.extend(certificates);
    if all.is_empty() {
        if !has_certificates {
            errs.add(
                pos,
                format!("{path}: expected a certificate (cert and key, or certificates)"),
            );
        }
        return None;
    }
    if client_auth_written && client_auth.is_none() {
        return None;
    }
    Some(ListenerTls {
        certificates: all,
        http2,
        client_auth,
    })
}

fn read_certificate(
    node: &Node,
    path: &str,
    errs: &mut Errors,
    base: &Path,
) -> Option<Certificate> {
    let mut f = Fields::open(node, path, errs)?;
    let cert = f.require("cert", errs, |n, p, e| input_file(n, p, e, base));
    let key = f.require("key", errs, |n, p, e| input_file(n, p, e, base));
    let server_names = f.get_or("server_names", Vec::new(), errs, |n, p, e| {
        super::fields::list_of(n, p, e, |n, p, e| parsed(n, p, e, validate::server_name))
    });
    f.finish(errs);
    Some(Certificate {
        cert: cert?,
        key: key?,
        server_names,
    })
}

fn read_admin(node: &Node, path: &str, errs: &mut Errors) -> Option<Admin> {
    let mut f = Fields::open(node, path, errs)?;
    let d = Admin::default();
    let mut address_pos = f.pos();
    let address = f.get_or("address", d.address, errs, |n, p, e| {
        address_pos = n.pos;
        parsed(n, p, e, validate::socket_addr)
    });
    let token = f.get("token", errs, secret);
    let token_written = f.has("token");
    let dashboard = f.get_or("dashboard", d.dashboard, errs, read_dashboard);
    f.finish(errs);
    if !address.ip().is_loopback() && !token_written {
        errs.add(
            address_pos,
            format!(
                "{path}.address: {address} is not a loopback address; an admin token is \
                 required (admin.token) when the admin API is exposed"
            ),
        );
        return None;
    }
    Some(Admin {
        address,
        token,
        dashboard,
    })
}

/// Most sources one dashboard scrapes.
const MAX_DASHBOARD_SOURCES: usize = 16;

/// Shortest and longest `admin.dashboard.scrape_every`.
const SCRAPE_EVERY_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));

fn read_dashboard(node: &Node, path: &str, errs: &mut Errors) -> Option<Dashboard> {
    let mut f = Fields::open(node, path, errs)?;
    let d = Dashboard::default();
    let sources = f.get_or("sources", d.sources, errs, read_sources);
    let scrape_every = f.get_or("scrape_every", d.scrape_every, errs, |n, p, e| {
        duration_within(n, p, e, SCRAPE_EVERY_RANGE)
    });
    f.finish(errs);
    Some(Dashboard {
        sources,
        scrape_every,
    })
}

fn read_sources(node: &Node, path: &str, errs: &mut Errors) -> Option<Vec<MetricsSource>> {
    let items = entries(node, path, errs)?;
    if items.len() > MAX_DASHBOARD_SOURCES {
        errs.add(
            node.pos,
            format!(
                "{path}: {} sources; at most {MAX_DASHBOARD_SOURCES} are accepted",
                items.len()
            ),
        );
        return None;
    }
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let item_path = format!("{path}.{}", item.key);
        if let Err(message) = valid_name("source", &item.key) {
            errs.add(item.key_pos, format!("{item_path}: {message}"));
            continue;
        }
        if let Some(url) = parsed(&item.value, &item_path, errs, metrics_url) {
            out.push(MetricsSource {
                name: item.key.clone(),
                url,
            });
        }
    }
    Some(out)
}

/// A plain-HTTP URL with a host, as the dashboard scrapes it.
fn metrics_url(s: &str) -> Result<String, String> {
    const MAX_URL: usize = 2048;
    let expected = "expected an http:// URL like http://127.0.0.1:9102/metrics";
    if s.len() > MAX_URL {
        return Err(format!(
            "the URL is longer than {MAX_URL} bytes; {expected}"
        ));
    }
    let url = url::Url::parse(s).map_err(|e| format!("\"{s}\" is not a URL ({e}); {expected}"))?;
    if url.scheme() != "http" || url.host().is_none() {
        return Err(format!("\"{s}\" is not a plain-HTTP URL; {expected}"));
    }
    Ok(url.to_string())
}

fn read_limits(node: &Node, path: &str, errs: &mut Errors) -> Option<Limits> {
    let mut f = Fields::open(node, path, errs)?;
    let d = Limits::default();
    let out = Limits {
        max_header_count: f.get_or("max_header_count", d.max_header_count, errs, |n, p, e| {
            number(n, p, e, 1, 10_000)
        }),
        max_header_bytes: f.get_or("max_header_bytes", d.max_header_bytes, errs, size_usize),
        max_uri_length: f.get_or("max_uri_length", d.max_uri_length, errs, size_usize),
        max_body: f.get_or("max_body", d.max_body, errs, size),
        encoded_slash: f.get_or("encoded_slash", d.encoded_slash, errs, |n, p, e| {
            let options = [
                ("reject", EncodedSlash::Reject),
                ("keep", EncodedSlash::Keep),
                ("decode", EncodedSlash::Decode),
            ];
            choice(n, p, e, &options)
        }),
    };
    f.finish(errs);
    Some(out)
}

fn read_telemetry(node: &Node, path: &str, errs: &mut Errors) -> Option<Telemetry> {
    let mut f = Fields::open(node, path, errs)?;
    let access_log = f.get_or("access_log", AccessLog::Stdout, errs, read_access_log);
    let otlp = f.get("otlp", errs, read_otlp);
    f.finish(errs);
    Some(Telemetry { access_log, otlp })
}

fn read_access_log(node: &Node, path: &str, errs: &mut Errors) -> Option<AccessLog> {
    if let Kind::Map(_) = node.kind {
        let mut f = Fields::open(node, path, errs)?;
        let file = f.require("file", errs, path_buf);
        f.finish(errs);
        return file.map(AccessLog::File);
    }
    let options = [("off", AccessLog::Off), ("stdout", AccessLog::Stdout)];
    choice(node, path, errs, &options)
}

fn endpoint(s: &str) -> Result<String, String> {
    if (s.starts_with("http://") || s.starts_with("https://")) && s.len() > "https://".len() {
        Ok(s.trim_end_matches('/').to_owned())
    } else {
        Err(format!(
            "\"{s}\" is not an OTLP endpoint; expected a URL like http://127.0.0.1:4318"
        ))
    }
}

fn read_otlp(node: &Node, path: &str, errs: &mut Errors) -> Option<Otlp> {
    let defaults = |endpoint| Otlp {
        endpoint,
        service_name: "meridian".to_owned(),
        sample_ratio: 1.0,
    };
    if !matches!(node.kind, Kind::Map(_)) {
        return parsed(node, path, errs, endpoint).map(defaults);
    }
    let mut f = Fields::open(node, path, errs)?;
    let url = f.require("endpoint", errs, |n, p, e| parsed(n, p, e, endpoint));
    let service_name = f.get("service_name", errs, non_empty);
    let sample_ratio = f.get("sample_ratio", errs, |n, p, e| float(n, p, e, 0.0, 1.0));
    f.finish(errs);
    let mut otlp = defaults(url?);
    otlp.service_name = service_name.unwrap_or(otlp.service_name);
    otlp.sample_ratio = sample_ratio.unwrap_or(otlp.sample_ratio);
    Some(otlp)
}
