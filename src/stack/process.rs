//! The processes of the stack: spawned from this same binary, their output prefixed with their
//! name, waited for until ready, and stopped in reverse order.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

/// Longest line copied from a child's output in one piece (longer ones are split).
const MAX_LINE: u64 = 16 * 1024;
/// How often readiness is polled.
const POLL: Duration = Duration::from_millis(100);

/// One running process of the stack.
pub struct Proc {
    /// Its name in logs (`gateway`, `urls`, …).
    pub name: &'static str,
    child: Child,
}

impl Proc {
    /// Starts this binary with `args` and `envs`, copying its stdout and stderr to ours with
    /// `name` in front of every line.
    pub fn spawn(
        name: &'static str,
        args: &[&str],
        envs: &[(&str, &Path)],
    ) -> std::io::Result<Proc> {
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C at the terminal reaches only the supervisor,
            // which then stops the processes in order (gateway first, origins last).
            .process_group(0);
        // SAFETY: the closure runs in the child between fork and exec and only makes the
        // async-signal-safe prctl(2) call: the child gets SIGTERM if the supervisor dies
        // (even by SIGKILL), so no process of the stack outlives it.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)
            });
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn()?;
        if let Some(out) = child.stdout.take() {
            tokio::spawn(copy_lines(name, out, false));
        }
        if let Some(err) = child.stderr.take() {
            tokio::spawn(copy_lines(name, err, true));
        }
        Ok(Proc { name, child })
    }

    /// Waits until `GET url` answers 200, failing when the process exits first or `limit`
    /// passes.
    pub async fn ready(
        &mut self,
        client: &reqwest::Client,
        url: &str,
        limit: Duration,
    ) -> Result<(), String> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("{} exited during startup ({status})", self.name));
            }
            let answered = client
                .get(url)
                .timeout(Duration::from_secs(1))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if answered {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!("{} not ready at {url} after {limit:?}", self.name));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Resolves when the process exits, with a description of how.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => e.to_string(),
        }
    }

    /// Asks the process to stop (SIGTERM) and waits up to `grace`, then kills it.
    pub async fn stop(&mut self, grace: Duration) {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        if tokio::time::timeout(grace, self.child.wait())
            .await
            .is_err()
        {
            log::warn!("{} did not stop within {grace:?}; killing it", self.name);
            let _ = self.child.kill().await;
        }
    }
}

async fn copy_lines(name: &'static str, from: impl AsyncRead + Unpin, to_stderr: bool) {
    let mut reader = BufReader::new(from);
    let mut line = Vec::with_capacity(256);
    let mut out: Box<dyn tokio::io::AsyncWrite + Unpin + Send> = if to_stderr {
        Box::new(tokio::io::stderr())
    } else {
        Box::new(tokio::io::stdout())
    };
    loop {
        line.clear();
        line.extend_from_slice(format!("{name:>7} | ").as_bytes());
        match (&mut reader)
            .take(MAX_LINE)
            .read_until(b'\n', &mut line)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                if line.last() != Some(&b'\n') {
                    line.push(b'\n');
                }
                if out.write_all(&line).await.is_err() {
                    return;
                }
            }
        }
    }
}
