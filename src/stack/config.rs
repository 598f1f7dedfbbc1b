//! `conf/stack.yaml`: which processes the demo platform runs, where, and with what settings.
//!
//! Every origin setting is optional; what is left out keeps the service's default (see
//! docs/origins/*.md). Durations and sizes take units (`5m`, `512MiB`).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gateway::config::document::Document;
use gateway::config::{units, ConfigErrors};
use serde::{Deserialize, Deserializer};

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
    pub urls: UrlsSection,
    /// Food-delivery orders.
    pub orders: OrdersSection,
    /// The video pipeline.
    pub video: VideoSection,
}

/// `origins.urls`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UrlsSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Base of the short URLs, as clients reach them (the gateway).
    pub public_base: Option<String>,
    /// Longest `max-age` of a redirect.
    #[serde(default, deserialize_with = "opt_duration")]
    pub redirect_max_age: Option<Duration>,
    /// How long an unknown code's 404 may be cached.
    #[serde(default, deserialize_with = "opt_duration")]
    pub not_found_max_age: Option<Duration>,
    /// How often counted clicks are written.
    #[serde(default, deserialize_with = "opt_duration")]
    pub flush_interval: Option<Duration>,
    /// Pending clicks that trigger an early write.
    pub flush_max: Option<u64>,
}

/// `origins.orders`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrdersSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Allow fault injection (`X-Fault`, `POST /api/orders/faults`).
    pub faults: Option<bool>,
    /// Where the saga calls payment and delivery (the gateway, for its breaker).
    pub participants_url: Option<String>,
    /// Timeout of one participant call.
    #[serde(default, deserialize_with = "opt_duration")]
    pub participant_timeout: Option<Duration>,
    /// How long `payment=slow` / `delivery=slow` faults stall.
    #[serde(default, deserialize_with = "opt_duration")]
    pub slow_delay: Option<Duration>,
    /// Deliveries of a message before it is dead-lettered.
    pub max_attempts: Option<u32>,
}

/// `origins.video`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSection {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The `ffmpeg` program.
    pub ffmpeg: Option<PathBuf>,
    /// The `ffprobe` program.
    pub ffprobe: Option<PathBuf>,
    /// Largest upload.
    #[serde(default, deserialize_with = "opt_size")]
    pub max_upload: Option<u64>,
    /// Transcodes running at once.
    pub workers: Option<usize>,
    /// The HLS ladder.
    pub ladder: Option<Vec<RungSection>>,
    /// Target segment length in seconds.
    pub segment_seconds: Option<u32>,
    /// Attempts of a transcode before it fails.
    pub max_attempts: Option<u32>,
    /// `max-age` of published playlists.
    #[serde(default, deserialize_with = "opt_duration")]
    pub playlist_max_age: Option<Duration>,
}

/// One rendition of the ladder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RungSection {
    /// Its name (directory and playlist name), e.g. `480p`.
    pub name: String,
    /// Frame height in pixels.
    pub height: u32,
    /// Video bitrate in kbit/s.
    pub video_kbps: u32,
    /// Audio bitrate in kbit/s.
    pub audio_kbps: u32,
}

fn opt_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    units::duration(d).map(Some)
}

fn opt_size<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    units::size(d).map(Some)
}

impl StackConfig {
    /// Reads the stack file at `path`, resolving its paths against the file's directory and
    /// checking that the gateway and edge configs it names exist.
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

    /// Where each origin listens, by name.
    pub fn origin_addresses(&self) -> [(&'static str, SocketAddr); 3] {
        [
            ("urls", self.origins.urls.listen),
            ("orders", self.origins.orders.listen),
            ("video", self.origins.video.listen),
        ]
    }
}

impl UrlsSection {
    /// Puts the settings given here over `c`.
    pub fn apply(&self, c: &mut origin::urls::Config) {
        if let Some(v) = &self.public_base {
            c.public_base = v.clone();
        }
        set(&mut c.redirect_max_age, self.redirect_max_age);
        set(&mut c.not_found_max_age, self.not_found_max_age);
        set(&mut c.flush_interval, self.flush_interval);
        set(&mut c.flush_max, self.flush_max);
    }
}

impl OrdersSection {
    /// Puts the settings given here over `c`.
    pub fn apply(&self, c: &mut origin::orders::Config) {
        set(&mut c.faults, self.faults);
        if let Some(v) = &self.participants_url {
            c.participants_url = Some(v.clone());
        }
        set(&mut c.participant_timeout, self.participant_timeout);
        set(&mut c.slow_delay, self.slow_delay);
        set(&mut c.max_attempts, self.max_attempts);
    }
}

impl VideoSection {
    /// Puts the settings given here over `c`.
    pub fn apply(&self, c: &mut origin::video::Config) {
        set(&mut c.ffmpeg, self.ffmpeg.clone());
        set(&mut c.ffprobe, self.ffprobe.clone());
        set(&mut c.max_upload, self.max_upload);
        set(&mut c.workers, self.workers);
        set(&mut c.segment_seconds, self.segment_seconds);
        set(&mut c.max_attempts, self.max_attempts);
        if let Some(age) = self.playlist_max_age {
            c.playlist_max_age = u32::try_from(age.as_secs()).unwrap_or(u32::MAX);
        }
        if let Some(ladder) = &self.ladder {
            c.ladder = ladder
                .iter()
                .map(|r| origin::video::Rung::new(&r.name, r.height, r.video_kbps, r.audio_kbps))
                .collect();
        }
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}
