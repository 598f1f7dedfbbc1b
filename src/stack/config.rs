//! `conf/stack.yaml`: which processes the demo platform runs, where, and with what settings.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use gateway::config::document::Document;
use gateway::config::ConfigErrors;
use serde::Deserialize;

/// The stack file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StackConfig {
    /// Directory of the embedded stores and the edge's disk cache (relative to the stack file).
    pub data: PathBuf,
    /// The gateway's Meridian config (relative to the stack file).
    pub gateway: PathBuf,
    /// The edge's Meridian config (relative to the stack file).
    pub edge: PathBuf,
    /// The origin services.
    pub origins: Origins,
}

/// The three origins.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Origins {
    /// The URL shortener.
    pub urls: OriginSection,
    /// Food-delivery orders.
    pub orders: OriginSection,
    /// The video pipeline.
    pub video: OriginSection,
}

impl Origins {
    /// The section of the origin called `name` (`urls`, `orders` or `video`).
    pub fn section(&self, name: &str) -> &OriginSection {
        match name {
            "orders" => &self.orders,
            "video" => &self.video,
            _ => &self.urls,
        }
    }
}

/// One origin: where it listens and its service settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginSection {
    /// Address to listen on.
    pub listen: SocketAddr,
}

impl StackConfig {
    /// Reads the stack file at `path`, resolving its paths against the file's directory and
    /// checking the gateway and edge configs it names.
    pub fn load(path: &Path) -> Result<StackConfig, ConfigErrors> {
        let doc = Document::load(path)?;
        let mut config: StackConfig = doc.deserialize()?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.data = base.join(&config.data);
        config.gateway = base.join(&config.gateway);
        config.edge = base.join(&config.edge);
        for (key, file) in [("gateway", &config.gateway), ("edge", &config.edge)] {
            if !file.is_file() {
                return Err(doc.error_at(
                    key,
                    format!("{key}: file \"{}\" does not exist", file.display()),
                ));
            }
        }
        Ok(config)
    }
}
