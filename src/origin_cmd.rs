//! `meridian origin NAME`: runs one of the origin services as its own process, with its
//! settings from the stack file (`-c conf/stack.yaml`, section `origins.NAME`) or from flags.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::stack::StackConfig;

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
        let section = stack.as_ref().map(|s| s.origins.section(name));
        let listen = self
            .listen
            .or(section.map(|s| s.listen))
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
        OriginCommand::Urls(c) => ("urls", c),
        OriginCommand::Orders(c) => ("orders", &c.common),
        OriginCommand::Video(c) => ("video", c),
    };
    let placement = match common.place(name) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
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
        let Placement {
            listen,
            data,
            stack,
        } = placement;
        let _ = &stack;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("{name}: cannot listen on {listen}: {e}"))?;
        log::info!(
            "origin {name} listening on {listen}, data in {}",
            data.display()
        );
        let shutdown = crate::stack::terminated();
        match command {
            OriginCommand::Urls(_) => {
                let config = origin::urls::Config { data_dir: data };
                origin::urls::run(config, listener, shutdown).await
            }
            OriginCommand::Orders(c) => {
                let config = origin::orders::Config {
                    participants_url: c.participants_url,
                    faults: c.faults,
                    crash_after_append: c.crash_after_append,
                    ..origin::orders::Config::new(data)
                };
                origin::orders::run(config, listener, shutdown).await
            }
            OriginCommand::Video(_) => {
                let config = origin::video::Config { data_dir: data };
                origin::video::run(config, listener, shutdown).await
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
