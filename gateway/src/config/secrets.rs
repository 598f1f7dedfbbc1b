//! Keeping secrets out of output.
//!
//! Typed secrets are [`Secret`](super::model::Secret). Plugin settings are free-form JSON, so
//! there a value is treated as secret when its key names one (`secret`, `token`, `password` as a
//! word of the key: `client_secret`, `api-token`, `password`); such values are shown as
//! `<redacted>` in Debug output and in serialized config (`/admin/config`), while the plugin
//! still receives the real value.

use std::fmt;

use serde::{Serialize, Serializer};
use serde_json::Value;

use super::model::PluginSpec;

/// What a redacted value is replaced with.
const REDACTED: &str = "<redacted>";

/// Words that mark a key as naming a secret.
const SECRET_WORDS: [&str; 5] = ["secret", "token", "password", "passwd", "credentials"];

/// Whether a setting called `key` holds a secret: one of its `_`/`-`/`.`-separated words
/// (case-insensitive) is `secret`, `token`, `password`, `passwd` or `credentials`.
pub fn is_secret_key(key: &str) -> bool {
    key.split(['_', '-', '.'])
        .any(|word| SECRET_WORDS.iter().any(|s| word.eq_ignore_ascii_case(s)))
}

/// A copy of `value` with every value under a secret-named key replaced by `<redacted>`.
pub fn redacted(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = if is_secret_key(k) {
                        Value::String(REDACTED.to_owned())
                    } else {
                        redacted(v)
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redacted).collect()),
        other => other.clone(),
    }
}

/// Serializes JSON settings with secrets redacted (used by [`PluginSpec`]).
pub fn ser_redacted_json<S: Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
    redacted(value).serialize(s)
}

impl fmt::Debug for PluginSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginSpec")
            .field("name", &self.name)
            .field("settings", &redacted(&self.settings))
            .field("at", &self.at)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn secret_keys() {
        for key in [
            "secret",
            "client_secret",
            "API-Token",
            "password",
            "db.passwd",
        ] {
            assert!(is_secret_key(key), "{key}");
        }
        for key in ["tokens_per_second", "key", "secretive", "header"] {
            assert!(!is_secret_key(key), "{key}");
        }
    }

    #[test]
    fn plugin_settings_are_redacted_in_debug_and_json_only() {
        let spec = PluginSpec::new(
            "jwt",
            json!({"audience": "a", "secret": "hunter2",
                   "keys": [{"client_secret": {"deep": "hunter3"}}]}),
        );
        let debug = format!("{spec:?}");
        let json = serde_json::to_string(&spec).expect("json");
        for shown in [&debug, &json] {
            assert!(!shown.contains("hunter"), "{shown}");
            assert!(
                shown.contains("<redacted>") && shown.contains("audience"),
                "{shown}"
            );
        }
        assert_eq!(spec.settings["secret"], "hunter2");
    }
}
