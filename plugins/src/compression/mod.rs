//! `compression`: gzip, brotli and zstd response compression negotiated by `Accept-Encoding`.
//!
//! The plugin decides; a downstream module ([`ResponseEncoder`]) does the encoding. For each response the plugin checks that it is worth
//! compressing (no `Content-Encoding` yet, a configured type, not smaller than `min_size`, not
//! a 204/206/304, no `Cache-Control: no-transform`), adds `Vary: Accept-Encoding`, picks the
//! coding the client accepts with the highest q-value (ties go to the configured preference
//! order; `*` covers codings not named; `q=0` refuses), and turns the module on for that coding
//! at its configured level. The module then drops `Content-Length` and `Accept-Ranges`, sets
//! `Content-Encoding`, weakens a strong `ETag` and streams the encoded body.
//!
//! [`ResponseEncoder`] is pingora's compression context wrapped as a downstream module that
//! finishes brotli streams properly; the gateway installs it in place of pingora's default
//! compression module. Only responses from the upstream or the cache are compressed (a cached
//! response is stored as the origin sent it and encoded for each client on the way out):
//! local responses of later plugins (a 413, a 429) are a line of text.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use http::header::{
    ACCEPT_ENCODING, CACHE_CONTROL, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE,
};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;
use pingora_cache::CachePhase;
use prometheus::IntCounterVec;
use serde::Deserialize;

mod encoder;
mod negotiate;

pub use encoder::{response_encoder, ResponseEncoder};
use negotiate::{negotiate, Coding};

use crate::headers::add_vary;
use crate::size_limit::Size;
use crate::{settings, ConfigError, Hooks, Plugin, PluginCtx};

/// Marks a request that went upstream (its response is not a plugin's local one).
#[derive(Clone, Copy)]
struct Upstreamed;

/// A `types` entry: `text/*` or an exact media type, lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TypeRule {
    Prefix(String),
    Exact(String),
}

const DEFAULT_TYPES: [&str; 16] = [
    "text/*",
    "application/json",
    "application/javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/ld+json",
    "application/manifest+json",
    "application/problem+json",
    "application/wasm",
    "application/vnd.apple.mpegurl",
    "application/x-mpegurl",
    "application/dash+xml",
    "image/svg+xml",
    "font/ttf",
];

impl TypeRule {
    fn parse(s: &str) -> Result<TypeRule, String> {
        let t = s.trim().to_ascii_lowercase();
        let Some((top, sub)) = t.split_once('/') else {
            return Err(format!(
                "\"{s}\" is not a media type; expected type/subtype or type/*"
            ));
        };
        // pingora's encoder only touches these types (and never one with "zip" in it).
        let encodable = matches!(top, "text" | "application" | "font")
            || matches!(
                t.as_str(),
                "image/svg+xml" | "image/x-icon" | "binary/octet-stream"
            );
        if !encodable || t.contains("zip") || sub.is_empty() {
            return Err(format!(
                "\"{s}\" cannot be compressed; expected text/*, application/..., font/..., \
                 image/svg+xml or image/x-icon (not already-compressed types)"
            ));
        }
        Ok(match sub {
            "*" => TypeRule::Prefix(format!("{top}/")),
            _ => TypeRule::Exact(t),
        })
    }

    fn matches(&self, media_type: &str) -> bool {
        match self {
            TypeRule::Prefix(p) => media_type.starts_with(p.as_str()),
            TypeRule::Exact(e) => media_type == e,
        }
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Levels {
    gzip: Option<u32>,
    br: Option<u32>,
    zstd: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    algorithms: Option<Vec<String>>,
    #[serde(default)]
    levels: Levels,
    min_size: Option<Size>,
    types: Option<Vec<String>>,
}

/// Responses compressed, by route and coding.
fn count_compressed(route: &str, coding: Coding) {
    static METRIC: OnceLock<Option<IntCounterVec>> = OnceLock::new();
    let metric = METRIC.get_or_init(|| {
        let opts = prometheus::Opts::new(
            "meridian_compression_responses_total",
            "Responses compressed by the compression plugin",
        );
        let m = IntCounterVec::new(opts, &["route", "algorithm"]).ok()?;
        match crate::metrics::registry().register(Box::new(m.clone())) {
            Ok(()) => Some(m),
            Err(e) => {
                log::warn!("compression: metric not registered: {e}");
                None
            }
        }
    });
    if let Some(m) = metric {
        m.with_label_values(&[route, coding.token()]).inc();
    }
}

/// The `compression` plugin.
pub(crate) struct Compression {
    /// Codings in server preference order.
    preference: Vec<Coding>,
    /// Level per coding, by [`Coding::index`].
    levels: [u32; 3],
    min_size: u64,
    types: Vec<TypeRule>,
}

impl Compression {
    /// Builds the plugin from its settings.
    pub(crate) fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
        Ok(Arc::new(Compression::new(value)?))
    }

    fn new(value: &serde_json::Value) -> Result<Compression, ConfigError> {
        let s: Settings = settings(value)?;
        let preference = match &s.algorithms {
            None => Coding::ALL.to_vec(),
            Some(list) if list.is_empty() => {
                return Err(ConfigError::at(
                    "algorithms",
                    "empty; expected some of [br, zstd, gzip] in preference order",
                ))
            }
            Some(list) => {
                let mut out = Vec::with_capacity(list.len());
                for (i, a) in list.iter().enumerate() {
                    let at = || format!("algorithms[{i}]");
                    let c = Coding::from_token(a.as_bytes()).ok_or_else(|| {
                        ConfigError::at(at(), format!("unknown \"{a}\"; expected br, zstd or gzip"))
                    })?;
                    if out.contains(&c) {
                        return Err(ConfigError::at(at(), format!("\"{a}\" is listed twice")));
                    }
                    out.push(c);
                }
                out
            }
        };
        let mut levels = [0; 3];
        for c in Coding::ALL {
            let (range, default) = c.levels();
            let set = match c {
                Coding::Gzip => s.levels.gzip,
                Coding::Brotli => s.levels.br,
                Coding::Zstd => s.levels.zstd,
            };
            let level = set.unwrap_or(default);
            if !range.contains(&level) {
                return Err(ConfigError::at(
                    format!("levels.{}", c.token()),
                    format!(
                        "{level} is out of range; expected {}..={}",
                        range.start(),
                        range.end()
                    ),
                ));
            }
            levels[c.index()] = level;
        }
        let type_names: Vec<String> = match s.types {
            Some(t) if t.is_empty() => {
                return Err(ConfigError::at(
                    "types",
                    "empty; expected media types like [text/*, application/json]",
                ))
            }
            Some(t) => t,
            None => DEFAULT_TYPES.iter().map(|t| t.to_string()).collect(),
        };
        let types = type_names
            .iter()
            .enumerate()
            .map(|(i, t)| TypeRule::parse(t).map_err(|m| ConfigError::at(format!("types[{i}]"), m)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Compression {
            preference,
            levels,
            min_size: s.min_size.map_or(1024, |s| s.0),
            types,
        })
    }

    /// Whether a response may be compressed at all (whatever the client accepts).
    fn eligible(&self, resp: &ResponseHeader) -> bool {
        let h = &resp.headers;
        if matches!(resp.status.as_u16(), 100..=199 | 204 | 206 | 304)
            || h.contains_key(CONTENT_ENCODING)
            || h.contains_key(CONTENT_RANGE)
        {
            return false;
        }
        let no_transform = h.get_all(CACHE_CONTROL).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|d| d.trim_ascii().eq_ignore_ascii_case(b"no-transform"))
        });
        if no_transform {
            return false;
        }
        let too_small = h
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .is_some_and(|n| n < self.min_size);
        if too_small {
            return false;
        }
        let Some(media_type) = h.get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        }) else {
            return false;
        };
        self.types.iter().any(|t| t.matches(&media_type))
    }
}

#[async_trait]
impl Plugin for Compression {
    fn hooks(&self) -> Hooks {
        Hooks {
            upstream_request: true,
            response: true,
            ..Hooks::NONE
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        _request: &mut RequestHeader,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        ctx.extensions.insert(Upstreamed);
        Ok(())
    }

    async fn response_filter(
        &self,
        session: &mut Session,
        response: &mut ResponseHeader,
        ctx: &mut PluginCtx,
    ) -> Result<()> {
        let upstream_or_cache = ctx.extensions.get::<Upstreamed>().is_some()
            || matches!(
                session.cache.phase(),
                CachePhase::Hit | CachePhase::Stale | CachePhase::StaleUpdating
            );
        if !upstream_or_cache || !self.eligible(response) {
            return Ok(());
        }
        add_vary(response, &ACCEPT_ENCODING);
        let accept = session.req_header().headers.get(ACCEPT_ENCODING);
        let Some(coding) = accept.and_then(|a| negotiate(a.as_bytes(), &self.preference)) else {
            return Ok(());
        };
        let Some(encoder) = session.downstream_modules_ctx.get_mut::<ResponseEncoder>() else {
            log::debug!("compression: the response encoder module is not installed");
            return Ok(());
        };
        encoder.enable(coding, self.levels[coding.index()])?;
        count_compressed(&ctx.route, coding);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Coding::*;

    fn plugin(v: serde_json::Value) -> Compression {
        match Compression::new(&v) {
            Ok(c) => c,
            Err(e) => panic!("{e}"),
        }
    }

    fn response(pairs: &[(&'static str, &'static str)]) -> ResponseHeader {
        let mut r = ResponseHeader::build(200, None).unwrap();
        for (k, v) in pairs {
            r.append_header(*k, *v).unwrap();
        }
        r
    }

    #[test]
    fn eligibility() {
        let c = plugin(serde_json::json!(null));
        assert!(c.eligible(&response(&[("content-type", "text/html; charset=utf-8")])));
        assert!(c.eligible(&response(&[
            ("content-type", "application/json"),
            ("content-length", "1024")
        ])));
        assert!(!c.eligible(&response(&[
            ("content-type", "application/json"),
            ("content-length", "1023")
        ])));
        assert!(!c.eligible(&response(&[("content-type", "image/jpeg")])));
        assert!(!c.eligible(&response(&[("content-type", "application/zip")])));
        assert!(!c.eligible(&response(&[])));
        assert!(!c.eligible(&response(&[
            ("content-type", "text/plain"),
            ("content-encoding", "gzip")
        ])));
        assert!(!c.eligible(&response(&[
            ("content-type", "text/plain"),
            ("cache-control", "public, No-Transform")
        ])));
        let mut partial = response(&[("content-type", "text/plain")]);
        partial.set_status(206).unwrap();
        assert!(!c.eligible(&partial));
    }

    #[test]
    fn settings_errors_name_the_field() {
        let err = |v: serde_json::Value| match Compression::new(&v) {
            Err(e) => e,
            Ok(_) => panic!("accepted {v}"),
        };
        let e = err(serde_json::json!({ "algorithms": ["br", "deflate"] }));
        assert_eq!(e.path, "algorithms[1]");
        let e = err(serde_json::json!({ "algorithms": ["gzip", "gzip"] }));
        assert_eq!(e.path, "algorithms[1]");
        let e = err(serde_json::json!({ "levels": { "br": 12 } }));
        assert_eq!(e.path, "levels.br");
        assert!(e.message.contains("1..=11"), "{e}");
        let e = err(serde_json::json!({ "types": ["text/*", "image/jpeg"] }));
        assert_eq!(e.path, "types[1]");
        let e = err(serde_json::json!({ "min_size": "1 KiB please" }));
        assert_eq!(e.path, "min_size");
        let e = err(serde_json::json!({ "level": 3 }));
        assert!(e.message.contains("unknown field `level`"), "{e}");
        let c = plugin(
            serde_json::json!({ "algorithms": ["gzip"], "min_size": "2KiB",
            "levels": { "gzip": 9 }, "types": ["application/json"] }),
        );
        assert_eq!(c.preference, vec![Gzip]);
        assert_eq!(c.min_size, 2048);
        assert_eq!(c.levels, [4, 3, 9]);
    }
}
