//! Claims forwarded upstream as request headers (`forward_claims: { sub: x-user-id }`). The
//! configured headers are always removed from what the client sent, so a client cannot set
//! them itself.

use std::collections::BTreeMap;

use http::{HeaderName, HeaderValue};
use pingora::http::RequestHeader;
use serde_json::Value;

use crate::{ConfigError, Identity, PluginCtx};

/// Claim → upstream header name.
#[derive(Debug, Clone, Default)]
pub struct Forward(Vec<(String, HeaderName)>);

/// Header values computed from the identity when the request was admitted, kept in
/// [`PluginCtx::extensions`] until the upstream request is built.
#[derive(Debug, Clone, Default)]
struct Forwarded(Vec<(HeaderName, HeaderValue)>);

impl Forward {
    /// Parses `claim: header` pairs; `path` is the settings key, for errors.
    pub fn parse(map: &BTreeMap<String, String>, path: &str) -> Result<Forward, ConfigError> {
        let mut out = Vec::with_capacity(map.len());
        for (claim, header) in map {
            let name = HeaderName::from_bytes(header.as_bytes()).map_err(|_| {
                ConfigError::at(
                    format!("{path}.{claim}"),
                    format!("\"{header}\" is not a header name"),
                )
            })?;
            out.push((claim.clone(), name));
        }
        Ok(Forward(out))
    }

    /// Whether `claim` is forwarded.
    pub fn names(&self, claim: &str) -> bool {
        self.0.iter().any(|(c, _)| c == claim)
    }

    /// Whether nothing is forwarded.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Records the header values for `identity` in the request's context. Claims that are
    /// absent, not scalars (or arrays of scalars), or not valid header values are not sent.
    pub fn record(&self, identity: &Identity, ctx: &mut PluginCtx) {
        let mut values = ctx.extensions.remove::<Forwarded>().unwrap_or_default();
        for (claim, header) in &self.0 {
            let Some(text) = claim_text(identity, claim) else {
                continue;
            };
            match HeaderValue::from_str(&text) {
                Ok(v) => values.0.push((header.clone(), v)),
                Err(_) => log::debug!("claim {claim} is not a valid header value; not forwarded"),
            }
        }
        ctx.extensions.insert(values);
    }

    /// Removes the configured headers from the upstream request and sets the recorded values.
    pub fn apply(&self, request: &mut RequestHeader, ctx: &PluginCtx) -> pingora::Result<()> {
        for (_, header) in &self.0 {
            request.remove_header(header);
        }
        if let Some(values) = ctx.extensions.get::<Forwarded>() {
            for (name, value) in &values.0 {
                if self.0.iter().any(|(_, h)| h == name) {
                    request.append_header(name.clone(), value.clone())?;
                }
            }
        }
        Ok(())
    }
}

/// A claim as header text: scalars printed, arrays of scalars joined with `,`.
fn claim_text(identity: &Identity, claim: &str) -> Option<String> {
    if let Some(Value::Array(items)) = identity.claims.get(claim) {
        let parts: Vec<String> = items
            .iter()
            .filter_map(|v| match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(_) | Value::Bool(_) => Some(v.to_string()),
                _ => None,
            })
            .collect();
        return (!parts.is_empty()).then(|| parts.join(","));
    }
    identity.claim_str(claim)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    #[test]
    fn strips_client_copies_and_sets_claims() {
        let map: BTreeMap<String, String> = [
            ("sub".to_string(), "x-user-id".to_string()),
            ("roles".to_string(), "x-roles".to_string()),
            ("evil".to_string(), "x-evil".to_string()),
        ]
        .into();
        let f = Forward::parse(&map, "forward_claims").expect("parse");
        let serde_json::Value::Object(claims) = serde_json::json!({
            "sub": "alice", "roles": ["a", "b"], "evil": "x\ny"
        }) else {
            panic!("object")
        };
        let identity = Identity {
            subject: "alice".into(),
            method: "jwt",
            claims: Arc::new(claims),
        };
        let mut ctx = PluginCtx::default();
        f.record(&identity, &mut ctx);
        let mut req = RequestHeader::build("GET", b"/", None).expect("req");
        req.insert_header("x-user-id", "mallory").expect("hdr");
        req.insert_header("x-evil", "forged").expect("hdr");
        f.apply(&mut req, &ctx).expect("apply");
        assert_eq!(req.headers.get_all("x-user-id").iter().count(), 1);
        assert_eq!(req.headers["x-user-id"], "alice");
        assert_eq!(req.headers["x-roles"], "a,b");
        assert!(req.headers.get("x-evil").is_none());
    }

    #[test]
    fn bad_header_name_points_at_the_claim() {
        let map: BTreeMap<String, String> = [("sub".to_string(), "bad header".to_string())].into();
        let e = Forward::parse(&map, "forward_claims").unwrap_err();
        assert_eq!(e.path, "forward_claims.sub");
    }
}
