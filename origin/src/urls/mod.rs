//! The URL shortener. (Being built: see issue 5.)

use std::future::Future;
use std::path::PathBuf;

use crate::http::BoxError;

/// How the shortener runs.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where its embedded store lives.
    pub data_dir: PathBuf,
}

/// Serves the shortener on `listener` until `shutdown` resolves, then drains and returns.
pub async fn run(
    config: Config,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), BoxError> {
    let _ = (config, listener, shutdown);
    Err("not built yet".into())
}
