//! `meridian`: the multi-region data store that speaks the Redis protocol.

use std::future::Future;

// `serve` turns tokio's LIFO slot off (see `main`), which tokio offers only
// under this cfg; the repository's .cargo/config.toml sets it.
#[cfg(not(tokio_unstable))]
compile_error!(
    "build meridian with `--cfg tokio_unstable` (.cargo/config.toml sets it; a RUSTFLAGS in the environment must include it)"
);

use clap::{Parser, Subcommand};
use meridian_ctl::status::StatusArgs;
use meridian_server::config::{Config, ServeArgs};
use meridian_tools::bench::BenchCommand;
use meridian_tools::demo::DemoArgs;

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
    Serve(Box<ServeArgs>),
    /// Start three regions on loopback with emulated WAN delays, write in all
    /// of them, cut one off, heal, and report convergence, conflicts and lag.
    Demo(DemoArgs),
    /// Benchmarks that start their own cluster.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Any region's view of the cluster as a table: links, lag, fenced
    /// keyspaces, conflicts in the last hour, clock offsets.
    Status(StatusArgs),
    /// List, add or remove the cluster's regions through any region.
    Members(meridian_ctl::members::MembersArgs),
    /// Run the deterministic simulator over seeds: regions, network, crashes
    /// and clocks in one thread, with invariant checkers; exits non-zero at
    /// the first anomaly, printing its seed and trace.
    Sim(meridian_tools::sim::SimArgs),
    /// Run three regions and a witness as real processes under random
    /// partitions, kill -9, restarts and clock skew with a recorded client
    /// load, then check the history offline; exits non-zero on any anomaly.
    Chaos(meridian_tools::chaos::ChaosArgs),
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command.unwrap_or(Command::Serve(Box::default())) {
        Command::Serve(args) => {
            let print = args.print_config;
            let config = Config::resolve(*args)?;
            if print {
                print!("{}", config.to_toml()?);
                return Ok(());
            }
            meridian_server::logging::init(config.log_json, &config.log_level);
            let mut builder = tokio::runtime::Builder::new_multi_thread();
            builder
                .worker_threads(meridian_server::server::worker_threads())
                .enable_all();
            // Tokio runs the task woken last first (its LIFO slot): two
            // connections readable in one poll would run newest first, and
            // a command could overtake one sent before it on another
            // connection. Redis's event loop serves them in arrival order.
            builder.disable_lifo_slot();
            let runtime = builder.build()?;
            runtime.block_on(meridian_server::server::run(config))
        }
        Command::Demo(args) => run_tool(meridian_tools::demo::run(args)),
        Command::Sim(args) => meridian_tools::sim::run(args),
        Command::Chaos(args) => run_tool(meridian_tools::chaos::run(args)),
        Command::Bench(command) => run_tool(meridian_tools::bench::run(command)),
        Command::Members(args) => {
            if let Err(e) = meridian_ctl::members::run(args) {
                eprintln!("meridian members: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
        Command::Status(args) => {
            // An operator's tool: the reason on one line, never a backtrace.
            if let Err(e) = meridian_ctl::status::run(args) {
                eprintln!("meridian status: {e:#}");
                std::process::exit(1);
            }
            Ok(())
        }
    }
}

/// Runs a tool that starts child regions. On Ctrl-C or SIGTERM the tool's
/// future is dropped, which kills its children and removes its temp dirs.
fn run_tool(tool: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    meridian_server::logging::init(false, "warn");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        tokio::select! {
            result = tool => result,
            signal = interrupted() => Err(anyhow::anyhow!("interrupted by {signal}; regions stopped")),
        }
    })
}

async fn interrupted() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return "Ctrl-C",
                _ = term.recv() => return "SIGTERM",
            }
        }
    }
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}
