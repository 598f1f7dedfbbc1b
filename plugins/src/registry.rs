//! Plugin factories by name, and the error type their config parsing returns.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use serde::de::DeserializeOwned;

use crate::Plugin;

/// A plugin config error: what is wrong, and where inside the plugin's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// Path inside the settings (`limits[0].rate`; empty for the settings as a whole). The
    /// gateway turns it into a file position.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}

impl ConfigError {
    /// An error at `path` inside the settings.
    pub fn at(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl From<String> for ConfigError {
    fn from(message: String) -> ConfigError {
        ConfigError::at("", message)
    }
}

impl From<&str> for ConfigError {
    fn from(message: &str) -> ConfigError {
        ConfigError::at("", message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for ConfigError {}

/// Deserialises plugin settings into `T`, reporting the path of the first bad field.
/// `null` settings (a plugin named with no settings) read as an empty mapping.
pub fn settings<T: DeserializeOwned>(value: &serde_json::Value) -> Result<T, ConfigError> {
    let empty = serde_json::Value::Object(serde_json::Map::new());
    let value = if value.is_null() { &empty } else { value };
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        ConfigError::at(path, e.into_inner().to_string())
    })
}

/// Builds a plugin from its settings (the YAML under its name, as JSON).
pub type Factory =
    Arc<dyn Fn(&serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> + Send + Sync>;

/// Plugin factories by name. Embedders add theirs with [`Registry::register`]; config names them.
#[derive(Clone, Default)]
pub struct Registry {
    factories: HashMap<String, Factory>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) a factory under `name`.
    pub fn register<F>(&mut self, name: &str, factory: F)
    where
        F: Fn(&serde_json::Value) -> Result<Arc<dyn Plugin>, ConfigError> + Send + Sync + 'static,
    {
        self.factories.insert(name.to_string(), Arc::new(factory));
    }

    /// Builds the plugin `name` from `settings`.
    pub fn build(
        &self,
        name: &str,
        settings: &serde_json::Value,
    ) -> Result<Arc<dyn Plugin>, ConfigError> {
        match self.factories.get(name) {
            Some(f) => f(settings),
            None => {
                let mut known: Vec<&str> = self.factories.keys().map(String::as_str).collect();
                known.sort_unstable();
                Err(ConfigError::from(format!(
                    "unknown plugin \"{name}\"; registered plugins: [{}]",
                    known.join(", ")
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct S {
        limits: Vec<L>,
    }
    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct L {
        rate: u32,
    }

    #[test]
    fn settings_errors_name_the_field() {
        let v = serde_json::json!({ "limits": [ { "rate": 1 }, { "rate": "x" } ] });
        let e = settings::<S>(&v).unwrap_err();
        assert_eq!(e.path, "limits[1].rate");
        assert!(e.message.contains("expected u32"), "{e}");
        let e = settings::<S>(&serde_json::json!({ "limitz": [] })).unwrap_err();
        assert!(e.message.contains("unknown field `limitz`"), "{e}");
    }

    #[test]
    fn unknown_plugin_lists_known_ones() {
        let mut r = Registry::new();
        r.register("b", |_| Err("no".into()));
        r.register("a", |_| Err("no".into()));
        let e = match r.build("c", &serde_json::Value::Null) {
            Err(e) => e,
            Ok(_) => panic!("built an unknown plugin"),
        };
        assert_eq!(
            e.message,
            "unknown plugin \"c\"; registered plugins: [a, b]"
        );
    }
}
