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
    Orders(OrdersArgs),
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

/// The orders service's flags.
#[derive(Args)]
pub struct OrdersArgs {
    #[command(flatten)]
    common: Common,
    /// Base URL of the payment and delivery participants (e.g. the gateway); default: this
    /// service's own listener.
    #[arg(long)]
    participants_url: Option<String>,
    /// Allow fault injection (`POST /api/orders/faults`, `X-Fault` on `POST /api/orders`).
    #[arg(long)]
    faults: bool,
    /// Test hook: abort right after the first order is committed, before it is published.
    #[arg(long, hide = true)]
    crash_after_append: bool,
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
            OriginCommand::Orders(c) => ("orders", c.common.listen),
            OriginCommand::Video(c) => ("video", c.listen),
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
                let config = origin::orders::Config {
                    participants_url: c.participants_url,
                    faults: c.faults,
                    crash_after_append: c.crash_after_append,
                    ..origin::orders::Config::new(c.common.data)
                };
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
