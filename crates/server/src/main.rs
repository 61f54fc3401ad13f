//! `meridian`: the multi-region data store that speaks the Redis protocol.

use clap::{Parser, Subcommand};
use meridian_server::config::{Config, ServeArgs};

#[derive(Parser)]
#[command(
    name = "meridian",
    version,
    about = "Active-active multi-region data store speaking the Redis protocol"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run one region (the default when no command is given).
    Serve(ServeArgs),
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MERIDIAN_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(ServeArgs::default())) {
        Command::Serve(args) => {
            let config = Config::resolve(args)?;
            init_logging(config.log_json);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(meridian_server::server::run(config))
        }
    }
}
