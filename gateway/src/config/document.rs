//! A YAML file read into a serde type, with errors at file:line:column — for the files around
//! the gateway's own config (the `meridian stack` file), so they report mistakes as precisely.

use std::collections::HashMap;
use std::path::Path;

use serde::de::DeserializeOwned;

use super::error::{ConfigError, ConfigErrors, Errors};
use super::model::Position;
use super::yaml;

/// A parsed YAML document: its value as JSON and where each value was written.
#[derive(Debug, Clone)]
pub struct Document {
    file: String,
    value: serde_json::Value,
    fields: HashMap<String, Position>,
}

impl Document {
    /// Reads and parses the YAML file at `path` (`${NAME}` is replaced from the environment).
    pub fn load(path: &Path) -> Result<Document, ConfigErrors> {
        let text = super::load::read_file(path)?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses YAML `text`; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Document, ConfigErrors> {
        let mut errs = Errors::new(file);
        let node = yaml::parse(text, &|name| std::env::var(name).ok(), &mut errs);
        if !errs.is_empty() {
            return Err(errs.finish());
        }
        let mut fields = HashMap::new();
        let value = node.map_or(serde_json::Value::Null, |n| {
            yaml::to_json(&n, "", &mut fields)
        });
        Ok(Document {
            file: file.to_owned(),
            value,
            fields,
        })
    }

    /// The file name errors are reported against.
    pub fn file(&self) -> &str {
        &self.file
    }

    /// Deserialises the document into `T`. The error names the first bad field by its path and
    /// position (`stack.yaml:7:5: origins.video.max_upload: …`).
    pub fn deserialize<T: DeserializeOwned>(&self) -> Result<T, ConfigErrors> {
        let empty = serde_json::Value::Object(serde_json::Map::new());
        let value = if self.value.is_null() {
            &empty
        } else {
            &self.value
        };
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            let path = if path == "." { String::new() } else { path };
            let message = e.into_inner().to_string();
            let message = if path.is_empty() {
                message
            } else {
                format!("{path}: {message}")
            };
            self.error_at(&path, message)
        })
    }

    /// An error about the value at `path` (or its nearest written ancestor).
    pub fn error_at(&self, path: &str, message: impl Into<String>) -> ConfigErrors {
        let at = self.position_of(path);
        ConfigErrors(vec![ConfigError {
            file: self.file.clone(),
            line: at.line,
            column: at.column,
            message: message.into(),
        }])
    }

    fn position_of(&self, path: &str) -> Position {
        let mut p = path;
        loop {
            if p.is_empty() {
                return Position { line: 1, column: 1 };
            }
            if let Some(pos) = self.fields.get(p) {
                return *pos;
            }
            p = match p.rfind(['.', '[']) {
                Some(i) => &p[..i],
                None => "",
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Shape {
        outer: Inner,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Inner {
        port: u16,
    }

    #[test]
    fn reads_a_good_document() {
        let doc = Document::parse("outer:\n  port: 80\n", "s.yaml").unwrap();
        assert_eq!(doc.deserialize::<Shape>().unwrap().outer.port, 80);
    }

    #[test]
    fn unknown_keys_are_refused_where_they_are() {
        let doc = Document::parse("outer:\n  port: 80\n  prot: 1\n", "s.yaml").unwrap();
        let err = doc.deserialize::<Shape>().unwrap_err().to_string();
        assert!(
            err.starts_with("s.yaml:3:3: outer.prot: unknown field `prot`"),
            "{err}"
        );
    }

    #[test]
    fn errors_point_at_the_bad_field() {
        let doc = Document::parse("outer:\n  port: big\n", "s.yaml").unwrap();
        let err = doc.deserialize::<Shape>().unwrap_err().to_string();
        assert!(
            err.starts_with("s.yaml:2:3: outer.port: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = Document::parse("a: [1,\n", "s.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.yaml:"), "{err}");
        assert!(err.contains("YAML syntax error"), "{err}");
    }
}
