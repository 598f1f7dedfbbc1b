//! A proxy-only build (without the `stack` feature) does not link the demo origin services, so
//! `meridian stack` and `meridian origin` are not in it; each says so, and how to get them.

use std::process::ExitCode;

use clap::Args;

/// Whatever was given after a subcommand this build does not have: taken as is, so the user
/// gets the explanation below rather than an argument error.
#[derive(Args)]
pub struct Absent {
    #[arg(num_args = 0.., trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _args: Vec<String>,
}

/// Says on stderr that `meridian COMMAND` needs a build with the `stack` feature; fails.
pub fn absent(command: &str) -> ExitCode {
    eprintln!(
        "meridian {command}: not in this build. This meridian is the proxy alone (built without \
         the `stack` feature), so it does not link the demo origin services. `meridian stack` and \
         `meridian origin` need the full build: `cargo build --release --bin meridian` (the \
         `stack` feature is on by default), or scripts/start, which builds it and starts the stack."
    );
    ExitCode::FAILURE
}
