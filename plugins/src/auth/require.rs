//! Claims an identity must carry (`require: { scope: [orders:write] }`): refused with 403
//! when it does not.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::Identity;

/// For each claim, the values it must contain. A claim may be a space-separated string (the
/// OAuth `scope`), an array, or a single value.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Require(BTreeMap<String, Vec<String>>);

/// What an identity lacks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// The claim.
    pub claim: String,
    /// The required values it does not contain, space-separated.
    pub values: String,
}

impl Require {
    /// Whether `claim` is required.
    pub fn names(&self, claim: &str) -> bool {
        self.0.contains_key(claim)
    }

    /// The first claim whose required values are not all there.
    pub fn check(&self, identity: &Identity) -> Result<(), Missing> {
        for (claim, wanted) in &self.0 {
            let have = values(identity.claims.get(claim.as_str()));
            let lacking: Vec<&str> = wanted
                .iter()
                .map(String::as_str)
                .filter(|w| !have.iter().any(|h| h == w))
                .collect();
            if !lacking.is_empty() {
                return Err(Missing {
                    claim: claim.clone(),
                    values: lacking.join(" "),
                });
            }
        }
        Ok(())
    }
}

/// The values of a claim: the words of a string, the elements of an array, or the value.
fn values(claim: Option<&Value>) -> Vec<String> {
    match claim {
        Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
        Some(Value::Array(items)) => items.iter().filter_map(scalar).collect(),
        Some(v) => scalar(v).into_iter().collect(),
        None => Vec::new(),
    }
}

fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn identity(claims: Value) -> Identity {
        let Value::Object(claims) = claims else {
            panic!("claims are an object")
        };
        Identity {
            subject: "u".into(),
            method: "jwt",
            claims: Arc::new(claims),
        }
    }

    #[test]
    fn scope_string_array_and_scalar() {
        let r: Require = serde_json::from_value(
            serde_json::json!({ "scope": ["orders:write"], "admin": ["true"] }),
        )
        .expect("require");
        let ok =
            identity(serde_json::json!({ "scope": "orders:read orders:write", "admin": true }));
        assert_eq!(r.check(&ok), Ok(()));
        let arr = identity(serde_json::json!({ "scope": ["orders:write"], "admin": true }));
        assert_eq!(r.check(&arr), Ok(()));
        let lacking = identity(serde_json::json!({ "scope": "orders:read", "admin": true }));
        assert_eq!(
            r.check(&lacking),
            Err(Missing {
                claim: "scope".into(),
                values: "orders:write".into()
            })
        );
        let absent = identity(serde_json::json!({ "scope": "orders:write" }));
        assert_eq!(r.check(&absent).map_err(|m| m.claim), Err("admin".into()));
    }
}
