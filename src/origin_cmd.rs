//! `meridian origin NAME`: runs one of the origin services as its own process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

/// The origin services.
#[derive(Subcommand)]
pub enum OriginCommand {
    /// The URL shortener.
    Urls(Common),
    /// Food-delivery orders (the saga).
    Orders(Common),
    /// The video pipeline (upload → ffmpeg → HLS).
    Video(VideoArgs),
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

/// The video pipeline's flags.
#[derive(Args)]
pub struct VideoArgs {
    #[command(flatten)]
    common: Common,
    /// The `ffmpeg` program (a path, or a name looked up on PATH).
    #[arg(long, default_value = "ffmpeg")]
    ffmpeg: PathBuf,
    /// The `ffprobe` program (a path, or a name looked up on PATH).
    #[arg(long, default_value = "ffprobe")]
    ffprobe: PathBuf,
    /// Largest upload in bytes.
    #[arg(long, default_value_t = 1 << 30)]
    max_upload: u64,
    /// Transcode workers running at once.
    #[arg(long, default_value_t = 1)]
    workers: usize,
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
            OriginCommand::Urls(c) => ("urls", c.listen),
            OriginCommand::Orders(c) => ("orders", c.listen),
            OriginCommand::Video(c) => ("video", c.common.listen),
        };
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{name}: cannot listen on {listen}: {e}"))?;
        log::info!("origin {name} listening on {listen}");
        match command {
            OriginCommand::Urls(c) => {
                let config = origin::urls::Config { data_dir: c.data };
                origin::urls::run(config, listener, terminated()).await
            }
            OriginCommand::Orders(c) => {
                let config = origin::orders::Config { data_dir: c.data };
                origin::orders::run(config, listener, terminated()).await
            }
            OriginCommand::Video(c) => {
                let config = origin::video::Config {
                    ffmpeg: c.ffmpeg,
                    ffprobe: c.ffprobe,
                    max_upload: c.max_upload,
                    workers: c.workers,
                    ..origin::video::Config::new(c.common.data)
                };
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
