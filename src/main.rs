//! The `meridian` command: run a gateway from a config file, check one, or (with the `stack`
//! feature, on by default) start the demo platform or one of its origin services.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[cfg(feature = "stack")]
mod origin_cmd;
#[cfg(not(feature = "stack"))]
mod proxy_only;
#[cfg(feature = "stack")]
mod stack;

/// mimalloc instead of the system allocator. The proxy makes a few dozen short-lived
/// allocations per request (header maps and values, pingora's buffers and tasks); glibc's
/// malloc and free were about an eighth of the CPU of a plain proxied request, mimalloc's
/// thread-local free lists make them cheap.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "A programmable API gateway and HLS CDN edge on Pingora"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a config file.
    Run {
        /// The YAML config file.
        #[arg(short, long)]
        config: PathBuf,
        /// Take the listening sockets over from the running Meridian (zero-downtime upgrade).
        #[arg(long)]
        upgrade: bool,
    },
    /// Validate a config file: print every error with file:line:column; exit 1 if any.
    Check {
        /// The YAML config file.
        #[arg(short, long)]
        config: PathBuf,
    },
    /// Start the whole demo platform on loopback: gateway, edge and the three origins.
    #[cfg(feature = "stack")]
    Stack {
        /// The stack file.
        #[arg(short, long, default_value = "conf/stack.yaml")]
        config: PathBuf,
        /// Only validate the stack file and the configs it names; exit 1 on any error.
        #[arg(long)]
        check: bool,
    },
    /// Run one of the origin services of the demo platform.
    #[cfg(feature = "stack")]
    #[command(subcommand)]
    Origin(origin_cmd::OriginCommand),
    /// Not in this proxy-only build: the demo platform needs the `stack` feature.
    #[cfg(not(feature = "stack"))]
    Stack(proxy_only::Absent),
    /// Not in this proxy-only build: the origin services need the `stack` feature.
    #[cfg(not(feature = "stack"))]
    Origin(proxy_only::Absent),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    match Cli::parse().command {
        #[cfg(feature = "stack")]
        Command::Origin(origin) => origin_cmd::run(origin),
        #[cfg(feature = "stack")]
        Command::Stack { config, check } => stack::run(&config, check),
        #[cfg(not(feature = "stack"))]
        Command::Stack(_) => proxy_only::absent("stack"),
        #[cfg(not(feature = "stack"))]
        Command::Origin(_) => proxy_only::absent("origin"),
        Command::Check { config } => {
            let checked = gateway::builder::GatewayBuilder::from_file(&config)
                .map_err(|errors| vec![errors.to_string()])
                .and_then(|builder| builder.check());
            match checked {
                Ok(()) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
        Command::Run { config, upgrade } => {
            let builder = match gateway::builder::GatewayBuilder::from_file(&config) {
                Ok(b) => b,
                Err(errors) => {
                    eprintln!("{errors}");
                    return ExitCode::FAILURE;
                }
            };
            match builder.upgrade(upgrade).build() {
                Ok(gw) => gw.run_forever(),
                Err(errors) => {
                    for e in errors {
                        eprintln!("{e}");
                    }
                    ExitCode::FAILURE
                }
            }
        }
    }
}
