//! `spotwright-certs generate | ensure`: see `docs/certs.md`.

use std::process::ExitCode;

use clap::error::ErrorKind;
use clap::Parser as _;
use spotwright_certs::cli::{run_ensure, run_generate, Cli, Command, LogFormat};

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return flag_error(e),
    };
    spotwright_serving::telemetry::init(cli.log_format);
    let result = match &cli.command {
        Command::Generate(args) => run_generate(args),
        Command::Ensure(args) => tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(run_ensure(args))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let line = one_line(&e);
            match cli.log_format {
                LogFormat::Json => tracing::error!(error = %line, "failed"),
                LogFormat::Text => eprintln!("spotwright-certs: error: {line}"),
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes a message already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out.replace(['\n', '\r'], " ")
}

/// `--help` / `--version` print as usual; a bad flag is one line and exit code 2.
fn flag_error(e: clap::Error) -> ExitCode {
    match e.kind() {
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
            let _ = e.print();
            ExitCode::SUCCESS
        }
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            ExitCode::from(2)
        }
        _ => {
            // clap spreads one error over several lines, then usage: keep the error only.
            let rendered = e.render().to_string();
            let text = rendered
                .lines()
                .map(str::trim)
                .take_while(|l| !l.starts_with("Usage:") && !l.starts_with("For more information"))
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>()
                .join(" ");
            let text = text.strip_prefix("error: ").unwrap_or(&text);
            eprintln!("spotwright-certs: error: {text} (see --help)");
            ExitCode::from(2)
        }
    }
}
