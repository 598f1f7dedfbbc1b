//! `headers`: add, set and remove request and response headers, with the semantics of the
//! route-level `request_headers` / `response_headers` rules (remove, then set, then add).
//!
//! [`HeaderRules`] is the compiled form; it is public so the gateway's route rules and this
//! plugin can share one implementation.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use http::header::{HeaderName, HeaderValue};
use pingora::http::{RequestHeader, ResponseHeader};
use pingora::proxy::Session;
use pingora::Result;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;

use crate::{settings, ConfigError, Hooks, Plugin, PluginCtx};

/// Header rules with names and values already validated: `remove`, then `set` (replace), then
/// `add` (append).
#[derive(Debug, Clone, Default)]
pub struct HeaderRules {
    add: Vec<(HeaderName, HeaderValue)>,
    set: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

/// Which list of a rule set an invalid entry is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleList {
    /// `add`.
    Add,
    /// `set`.
    Set,
    /// `remove`.
    Remove,
}

impl RuleList {
    /// The config key of the list.
    pub fn key(self) -> &'static str {
        match self {
            RuleList::Add => "add",
            RuleList::Set => "set",
            RuleList::Remove => "remove",
        }
    }
}

/// An invalid rule: the list, the header name as written, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleError {
    /// The list the rule is in.
    pub list: RuleList,
    /// The header name as written.
    pub name: String,
    /// What is wrong.
    pub message: String,
}

/// Framing headers: a rule changing them would desynchronise the message from its body.
const FRAMING: [HeaderName; 2] = [
    http::header::CONTENT_LENGTH,
    http::header::TRANSFER_ENCODING,
];

impl HeaderRules {
    /// Compiles rules from names and values as written.
    pub fn compile<'a>(
        add: impl IntoIterator<Item = (&'a str, &'a str)>,
        set: impl IntoIterator<Item = (&'a str, &'a str)>,
        remove: impl IntoIterator<Item = &'a str>,
    ) -> Result<HeaderRules, RuleError> {
        let name = |list: RuleList, n: &str| -> Result<HeaderName, RuleError> {
            let err = |message: &str| RuleError {
                list,
                name: n.to_string(),
                message: message.to_string(),
            };
            let parsed =
                HeaderName::from_bytes(n.as_bytes()).map_err(|_| err("not a valid header name"))?;
            if FRAMING.contains(&parsed) {
                return Err(err(
                    "framing headers (content-length, transfer-encoding) cannot be changed",
                ));
            }
            Ok(parsed)
        };
        let pair = |list: RuleList, (n, v): (&str, &str)| {
            let value = HeaderValue::from_str(v).map_err(|_| RuleError {
                list,
                name: n.to_string(),
                message: "value has control characters; expected visible text".to_string(),
            })?;
            Ok((name(list, n)?, value))
        };
        Ok(HeaderRules {
            add: add
                .into_iter()
                .map(|p| pair(RuleList::Add, p))
                .collect::<Result<_, _>>()?,
            set: set
                .into_iter()
                .map(|p| pair(RuleList::Set, p))
                .collect::<Result<_, _>>()?,
            remove: remove
                .into_iter()
                .map(|n| name(RuleList::Remove, n))
                .collect::<Result<_, _>>()?,
        })
    }

    /// True when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }

    /// Applies remove, then set, then add to a request.
    pub fn apply_request(&self, req: &mut RequestHeader) {
        for n in &self.remove {
            req.remove_header(n);
        }
        for (n, v) in &self.set {
            // Inserting a validated name and value cannot fail.
            let _ = req.insert_header(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            let _ = req.append_header(n.clone(), v.clone());
        }
    }

    /// Applies remove, then set, then add to a response.
    pub fn apply_response(&self, resp: &mut ResponseHeader) {
        for n in &self.remove {
            resp.remove_header(n);
        }
        for (n, v) in &self.set {
            let _ = resp.insert_header(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            let _ = resp.append_header(n.clone(), v.clone());
        }
    }
}

/// Adds `name` to `Vary` unless it (or `*`) is already there.
pub(crate) fn add_vary(resp: &mut ResponseHeader, name: &HeaderName) {
    let present = resp.headers.get_all(http::header::VARY).iter().any(|v| {
        v.as_bytes()
            .split(|&b| b == b',')
            .map(<[u8]>::trim_ascii)
            .any(|t| t == b"*" || t.eq_ignore_ascii_case(name.as_str().as_bytes()))
    });
    if !present {
        let _ = resp.append_header(http::header::VARY, HeaderValue::from_name(name.clone()));
    }
}

/// A header value as YAML gives it: text, or a plain number or boolean read as text.
struct Text(String);

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Text, D::Error> {
        struct TextVisitor;
        impl Visitor<'_> for TextVisitor {
            type Value = Text;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a header value (text)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                Ok(Text(v.to_string()))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

fn pairs(m: &BTreeMap<String, Text>) -> impl Iterator<Item = (&str, &str)> {
    m.iter().map(|(k, v)| (k.as_str(), v.0.as_str()))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RuleSettings {
    #[serde(default)]
    add: BTreeMap<String, Text>,
    #[serde(default)]
    set: BTreeMap<String, Text>,
    #[serde(default)]
    remove: Vec<String>,
}

impl RuleSettings {
    /// Compiles the rules under `key` (`request` or `response`).
    fn compile(&self, key: &str) -> Result<HeaderRules, ConfigError> {
        HeaderRules::compile(
            pairs(&self.add),
            pairs(&self.set),
            self.remove.iter().map(String::as_str),
        )
        .map_err(|e| {
            let at = match e.list {
                RuleList::Remove => {
                    let i = self.remove.iter().position(|n| *n == e.name).unwrap_or(0);
                    format!("{key}.remove[{i}]")
                }
                list => format!("{key}.{}.{}", list.key(), e.name),
            };
            ConfigError::at(at, e.message)
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    request: RuleSettings,
    #[serde(default)]
    response: RuleSettings,
}

/// The `headers` plugin.
pub(crate) struct Headers {
    request: HeaderRules,
    response: HeaderRules,
}

impl Headers {
    /// Builds the plugin from `{ request: RULES, response: RULES }`.
    pub(crate) fn build(value: &serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> {
        let s: Settings = settings(value)?;
        let request = s.request.compile("request")?;
        let response = s.response.compile("response")?;
        if request.is_empty() && response.is_empty() {
            return Err(ConfigError::at(
                "",
                "no rule set; expected request and/or response with add, set or remove",
            ));
        }
        Ok(Arc::new(Headers { request, response }))
    }
}

#[async_trait]
impl Plugin for Headers {
    fn hooks(&self) -> Hooks {
        Hooks {
            upstream_request: !self.request.is_empty(),
            response: !self.response.is_empty(),
            ..Hooks::NONE
        }
    }

    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        request: &mut RequestHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<()> {
        self.request.apply_request(request);
        Ok(())
    }

    async fn response_filter(
        &self,
        _session: &mut Session,
        response: &mut ResponseHeader,
        _ctx: &mut PluginCtx,
    ) -> Result<()> {
        self.response.apply_response(response);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn build_err(v: serde_json::Value) -> ConfigError {
        match Headers::build(&v) {
            Err(e) => e,
            Ok(_) => panic!("accepted {v}"),
        }
    }

    #[test]
    fn remove_then_set_then_add() {
        let rules =
            HeaderRules::compile([("x-multi", "b")], [("x-set", "new")], ["x-gone", "x-set"])
                .unwrap();
        let mut resp = ResponseHeader::build(200, None).unwrap();
        resp.insert_header("x-gone", "1").unwrap();
        resp.insert_header("x-set", "old").unwrap();
        resp.insert_header("x-multi", "a").unwrap();
        rules.apply_response(&mut resp);
        assert!(resp.headers.get("x-gone").is_none());
        assert_eq!(resp.headers["x-set"], "new");
        let multi: Vec<_> = resp.headers.get_all("x-multi").iter().collect();
        assert_eq!(multi, ["a", "b"]);

        let mut req = RequestHeader::build("GET", b"/", None).unwrap();
        req.insert_header("x-set", "old").unwrap();
        rules.apply_request(&mut req);
        assert_eq!(req.headers["x-set"], "new");
        assert_eq!(req.headers["x-multi"], "b");
    }

    #[test]
    fn yaml_scalars_become_text() {
        let p = Headers::build(&serde_json::json!({
            "response": { "set": { "x-n": 1, "x-b": true } }
        }));
        assert!(p.is_ok());
    }

    #[test]
    fn errors_point_at_the_rule() {
        let e = build_err(serde_json::json!({ "request": { "set": { "bad name": "x" } } }));
        assert_eq!(e.path, "request.set.bad name");
        assert!(e.message.contains("not a valid header name"), "{e}");
        let e =
            build_err(serde_json::json!({ "response": { "remove": ["ok", "content-length"] } }));
        assert_eq!(e.path, "response.remove[1]");
        assert!(e.message.contains("framing"), "{e}");
        let e = build_err(serde_json::json!({ "response": { "add": { "x": "a\u{7}b" } } }));
        assert_eq!(e.path, "response.add.x");
        let e = build_err(serde_json::json!({ "response": { "append": {} } }));
        assert!(e.message.contains("unknown field `append`"), "{e}");
        let e = build_err(serde_json::json!({}));
        assert!(e.message.contains("no rule set"), "{e}");
    }
}
