//! The `timepool` command. (The web branch wires `web` and `admin`; the DNS
//! daemon's subcommands join here.)

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "timepool",
    version,
    about = "The serving system of a public NTP pool"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane's web app.
    Web(timepool::web::WebArgs),
    /// Staff tasks from the command line.
    Admin {
        #[command(subcommand)]
        command: timepool::web::admin::AdminCommand,
    },
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("timepool: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Web(args) => timepool::web::run(args).await,
            Command::Admin { command } => timepool::web::admin::run_admin(command).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("timepool: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
