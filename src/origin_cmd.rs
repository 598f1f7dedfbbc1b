//! `meridian origin NAME`: runs one of the origin services as its own process. Its settings
//! come from the stack file (`-c conf/stack.yaml`, section `origins.NAME`; data under
//! `DATA/NAME`), then from flags, which win.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};

use crate::stack::StackConfig;

/// The origin services.
#[derive(Subcommand)]
pub enum OriginCommand {
    /// The URL shortener.
    Urls(UrlsArgs),
    /// Food-delivery orders (the saga).
    Orders(OrdersArgs),
    /// The video pipeline (upload → ffmpeg → HLS).
    Video(VideoArgs),
}

/// What every origin is told.
#[derive(Args)]
pub struct Common {
    /// The stack file: settings come from its `origins.NAME` section, data goes to `DATA/NAME`.
    #[arg(short, long)]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the stack file).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Directory of its embedded store, created if missing (overrides the stack file).
    #[arg(long)]
    data: Option<PathBuf>,
}

/// The URL shortener's flags.
#[derive(Args)]
pub struct UrlsArgs {
    #[command(flatten)]
    common: Common,
    /// Base of the short URLs, as clients reach them (the gateway).
    #[arg(long)]
    public_base: Option<String>,
    /// Longest `Cache-Control: max-age` of a redirect, in seconds.
    #[arg(long)]
    redirect_max_age: Option<u64>,
    /// How often counted clicks are written to the store, in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flush_interval_ms: Option<u64>,
    /// Pending clicks that trigger a write before the interval is up.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    flush_max: Option<u64>,
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

/// The video service's flags.
#[derive(Args)]
pub struct VideoArgs {
    #[command(flatten)]
    common: Common,
    /// The `ffmpeg` program (a path, or a name looked up on PATH).
    #[arg(long)]
    ffmpeg: Option<PathBuf>,
    /// The `ffprobe` program (a path, or a name looked up on PATH).
    #[arg(long)]
    ffprobe: Option<PathBuf>,
    /// Largest upload in bytes.
    #[arg(long)]
    max_upload: Option<u64>,
    /// Transcode workers running at once.
    #[arg(long)]
    workers: Option<usize>,
}

/// Where an origin listens and keeps its data, and the stack file if one was given.
struct Placement {
    listen: SocketAddr,
    data: PathBuf,
    stack: Option<StackConfig>,
}

impl Common {
    fn place(&self, name: &str) -> Result<Placement, String> {
        let stack = match &self.config {
            Some(path) => Some(StackConfig::load(path).map_err(|e| e.to_string())?),
            None => None,
        };
        let from_stack = stack.as_ref().and_then(|s| {
            s.origin_addresses()
                .into_iter()
                .find(|(n, _)| *n == name)
                .map(|(_, a)| a)
        });
        let listen = self
            .listen
            .or(from_stack)
            .ok_or("give --listen, or -c with a stack file")?;
        let data = self
            .data
            .clone()
            .or(stack.as_ref().map(|s| s.data.join(name)))
            .ok_or("give --data, or -c with a stack file")?;
        Ok(Placement {
            listen,
            data,
            stack,
        })
    }
}

/// Runs the chosen origin until SIGINT or SIGTERM.
pub fn run(command: OriginCommand) -> ExitCode {
    let (name, common) = match &command {
        OriginCommand::Urls(a) => ("urls", &a.common),
        OriginCommand::Orders(a) => ("orders", &a.common),
        OriginCommand::Video(a) => ("video", &a.common),
    };
    let placement = match common.place(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(runtime) = crate::stack::runtime(None) else {
        return ExitCode::FAILURE;
    };
    let result = runtime.block_on(async move {
        let listen = placement.listen;
        let listener = gateway::server::listen(listen)
            .await
            .map_err(|e| format!("{name}: cannot listen on {listen}: {e}"))?;
        log::info!(
            "origin {name} listening on {listen}, data in {}",
            placement.data.display()
        );
        serve(command, placement, listener).await
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(
    command: OriginCommand,
    placement: Placement,
    listener: tokio::net::TcpListener,
) -> Result<(), origin::http::BoxError> {
    let Placement { data, stack, .. } = placement;
    let origins = stack.map(|s| s.origins);
    let shutdown = crate::stack::terminated();
    match command {
        OriginCommand::Urls(a) => {
            let mut c = origin::urls::Config::new(data);
            if let Some(o) = &origins {
                o.urls.apply(&mut c);
            }
            if let Some(v) = a.public_base {
                c.public_base = v;
            }
            if let Some(v) = a.redirect_max_age {
                c.redirect_max_age = Duration::from_secs(v);
            }
            if let Some(v) = a.flush_interval_ms {
                c.flush_interval = Duration::from_millis(v);
            }
            if let Some(v) = a.flush_max {
                c.flush_max = v;
            }
            origin::urls::run(c, listener, shutdown).await
        }
        OriginCommand::Orders(a) => {
            let mut c = origin::orders::Config::new(data);
            if let Some(o) = &origins {
                o.orders.apply(&mut c);
            }
            if a.participants_url.is_some() {
                c.participants_url = a.participants_url;
            }
            c.faults |= a.faults;
            c.crash_after_append = a.crash_after_append;
            origin::orders::run(c, listener, shutdown).await
        }
        OriginCommand::Video(a) => {
            let mut c = origin::video::Config::new(data);
            if let Some(o) = &origins {
                o.video.apply(&mut c);
            }
            if let Some(v) = a.ffmpeg {
                c.ffmpeg = v;
            }
            if let Some(v) = a.ffprobe {
                c.ffprobe = v;
            }
            if let Some(v) = a.max_upload {
                c.max_upload = v;
            }
            if let Some(v) = a.workers {
                c.workers = v;
            }
            origin::video::run(c, listener, shutdown).await
        }
    }
}
