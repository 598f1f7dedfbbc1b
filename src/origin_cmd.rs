//! `meridian origin NAME`: runs one of the origin services as its own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

/// The origin services.
#[derive(Subcommand)]
pub enum OriginCommand {
    /// The URL shortener.
    Urls(UrlsArgs),
    /// Food-delivery orders (the saga).
    Orders(Common),
    /// The video pipeline (upload → ffmpeg → HLS).
    Video(Common),
}

/// What every origin is told.
#[derive(Args)]
pub struct Common {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// Directory of its embedded store (created if missing).
    #[arg(long)]
    data: PathBuf,
}

/// What the URL shortener is told.
#[derive(Args)]
pub struct UrlsArgs {
    #[command(flatten)]
    common: Common,
    /// Base of the short URLs it answers, as clients reach it (the gateway).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    public_base: String,
    /// Longest `Cache-Control: max-age` of a redirect, in seconds.
    #[arg(long, default_value_t = 300)]
    redirect_max_age: u64,
    /// How often counted clicks are written to the store, in milliseconds.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    flush_interval_ms: u64,
    /// Pending clicks that trigger a write before the interval is up.
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    flush_max: u64,
}

/// Runs the chosen origin until SIGINT or SIGTERM.
pub fn run(command: OriginCommand) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        let (name, listen) = match &command {
            OriginCommand::Urls(c) => ("urls", c.common.listen),
            OriginCommand::Orders(c) => ("orders", c.listen),
            OriginCommand::Video(c) => ("video", c.listen),
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{name}: cannot listen on {listen}: {e}"))?;
        log::info!("origin {name} listening on {listen}");
        match command {
            OriginCommand::Urls(c) => {
                let config = origin::urls::Config {
                    public_base: c.public_base,
                    redirect_max_age: Duration::from_secs(c.redirect_max_age),
                    flush_interval: Duration::from_millis(c.flush_interval_ms),
                    flush_max: c.flush_max,
                    ..origin::urls::Config::new(c.common.data)
                };
                origin::urls::run(config, listener, terminated()).await
            }
            OriginCommand::Orders(c) => {
                let config = origin::orders::Config { data_dir: c.data };
                origin::orders::run(config, listener, terminated()).await
            }
            OriginCommand::Video(c) => {
                let config = origin::video::Config { data_dir: c.data };
                origin::video::run(config, listener, terminated()).await
            }
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn terminated() {
    use tokio::signal::unix::{signal, SignalKind};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
