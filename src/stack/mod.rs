//! `meridian stack`: the whole demo platform on loopback — the three origins, the edge and the
//! gateway, each its own process of this binary — started in dependency order, each waited
//! for until ready, and stopped together (gateway first) on Ctrl-C or SIGTERM, or when any of
//! them dies.

mod config;
mod process;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

pub use config::StackConfig;
use process::Proc;

/// Time each process gets to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);
/// Time each process gets to stop before it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(15);
/// Environment variable naming the stack's data directory to its processes (the edge config
/// puts its disk cache there).
pub const DATA_ENV: &str = "MERIDIAN_STACK_DATA";

/// Runs the stack described by the file at `path` until it is told to stop; with `check_only`,
/// validates the stack file and the gateway and edge configs it names, and stops there.
pub fn run(path: &Path, check_only: bool) -> ExitCode {
    let stack = match StackConfig::load(path) {
        Ok(s) => s,
        Err(errors) => {
            eprintln!("{errors}");
            return ExitCode::FAILURE;
        }
    };
    let mut addresses = Vec::new();
    for (name, file) in [("gateway", &stack.gateway), ("edge", &stack.edge)] {
        match gateway::config::load_file(file) {
            Ok(c) => addresses.push((name, c)),
            Err(errors) => {
                eprintln!("{errors}");
                return ExitCode::FAILURE;
            }
        }
    }
    if check_only {
        println!("{}: ok", path.display());
        return ExitCode::SUCCESS;
    }
    if let Err(e) = std::fs::create_dir_all(&stack.data) {
        eprintln!(
            "cannot create the data directory {}: {e}",
            stack.data.display()
        );
        return ExitCode::FAILURE;
    }
    let Some(runtime) = runtime(Some(2)) else {
        return ExitCode::FAILURE;
    };
    match runtime.block_on(supervise(path, &stack, &addresses)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("stack: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn supervise(
    path: &Path,
    stack: &StackConfig,
    meridians: &[(&'static str, gateway::config::Config)],
) -> Result<(), String> {
    let stack_file = std::path::absolute(path).map_err(|e| e.to_string())?;
    let stack_file = stack_file.to_string_lossy().into_owned();
    let data = std::path::absolute(&stack.data).map_err(|e| e.to_string())?;
    let env = [(DATA_ENV, data.as_path())];
    let client = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| e.to_string())?;
    let mut procs: Vec<Proc> = Vec::new();
    let started = start_all(&client, stack, meridians, &stack_file, &env, &mut procs).await;
    if let Err(e) = started {
        stop_all(&mut procs).await;
        return Err(e);
    }
    print_banner(stack, meridians);
    let outcome = tokio::select! {
        _ = terminated() => Ok(()),
        (name, how) = first_exit(&mut procs) => Err(format!("{name} exited ({how}); stopping the stack")),
    };
    stop_all(&mut procs).await;
    outcome
}

async fn start_all(
    client: &reqwest::Client,
    stack: &StackConfig,
    meridians: &[(&'static str, gateway::config::Config)],
    stack_file: &str,
    env: &[(&str, &Path)],
    procs: &mut Vec<Proc>,
) -> Result<(), String> {
    for (name, listen) in stack.origin_addresses() {
        let mut p = Proc::spawn(name, &["origin", name, "-c", stack_file], env)
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let url = format!("http://{listen}/healthz");
        let ready = p.ready(client, &url, READY_WITHIN).await;
        procs.push(p);
        ready?;
    }
    // The edge before the gateway: the gateway routes cached paths to it.
    for name in ["edge", "gateway"] {
        let Some((_, config)) = meridians.iter().find(|(n, _)| *n == name) else {
            continue;
        };
        let file = if name == "edge" {
            &stack.edge
        } else {
            &stack.gateway
        };
        let file = file.to_string_lossy();
        let mut p = Proc::spawn(name, &["run", "-c", &file], env)
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let url = format!("http://{}/readyz", config.admin.address);
        let ready = p.ready(client, &url, READY_WITHIN).await;
        procs.push(p);
        ready?;
    }
    Ok(())
}

/// The first process to exit, and how.
async fn first_exit(procs: &mut [Proc]) -> (&'static str, String) {
    let waits = procs.iter_mut().map(|p| {
        Box::pin(async move {
            let how = p.exited().await;
            (p.name, how)
        })
    });
    futures::future::select_all(waits).await.0
}

/// Stops every process, the last started first.
async fn stop_all(procs: &mut Vec<Proc>) {
    while let Some(mut p) = procs.pop() {
        log::info!("stopping {}", p.name);
        p.stop(STOP_WITHIN).await;
    }
}

fn print_banner(stack: &StackConfig, meridians: &[(&'static str, gateway::config::Config)]) {
    let mut lines = vec!["Meridian stack is up:".to_string()];
    for (name, config) in meridians.iter().rev() {
        if let Some(l) = config.listeners.first() {
            lines.push(format!(
                "  {name:<8} http://{}   admin http://{}   dashboard http://{}/dashboard",
                l.address, config.admin.address, config.admin.address
            ));
        }
    }
    for (name, listen) in stack.origin_addresses() {
        lines.push(format!("  {name:<8} http://{listen}"));
    }
    lines.push("Walk-through: README.md, \"Try it\". Ctrl-C stops everything.".to_string());
    println!("{}", lines.join("\n"));
}

/// A multi-threaded tokio runtime (`workers` threads, or one per core); `None`, said on
/// stderr, when it cannot be built.
pub fn runtime(workers: Option<usize>) -> Option<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = workers {
        builder.worker_threads(n);
    }
    builder
        .enable_all()
        .build()
        .map_err(|e| eprintln!("cannot start the runtime: {e}"))
        .ok()
}

/// Resolves on SIGINT or SIGTERM.
pub async fn terminated() {
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
