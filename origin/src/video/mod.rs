//! The video pipeline. (Being built: see issue 5.)

use std::future::Future;
use std::path::PathBuf;

use crate::http::BoxError;

/// How the video service runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where its embedded store lives.
    pub data_dir: PathBuf,
}

/// Serves the video service on `listener` until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let _ = (config, listener, shutdown);
    Err("not built yet".into())
}
