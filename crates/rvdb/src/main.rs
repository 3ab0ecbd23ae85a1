//! `rvdb`: one binary for every role.
//!
//! - `rvdb serve`: the embedded all-in-one default, data in `./data`, no setup: the index manager, a storage
//!   node (gRPC on 127.0.0.1:50051) and the gateway (MCP at http://127.0.0.1:8080/mcp, REST at /v1) in one
//!   process, wired by direct calls.
//! - `rvdb manager`, `rvdb node --manager URL`, `rvdb gateway --manager URL`: the services of a cluster.
//!   `rvdb mcp-stdio`: MCP over stdio.
//! - client commands (`create-store`, `insert`, `search`, `backup`, …) that call the gateway's REST API.
//! - `rvdb bench`: the benchmarks whose figures the README reports.
//!
//! Configuration mirrors the seed's `sys.config` keys as a TOML file (`--config`), `RVDB_…` environment variables
//! and flags, in that order of precedence ([`config`]).

mod bench;
mod client;
mod cluster_bench;
mod config;
mod npy;
mod ops;
mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "rvdb", about = "rvdb: a distributed vector database for AI agents",
          version = concat!(env!("CARGO_PKG_VERSION"), " (source ", env!("RVDB_SOURCE_FINGERPRINT"), ")"))]
struct Cli {
    /// A TOML config file (keys: the settings' names, e.g. `mcp_port = 8080`; see `deploy/rvdb.toml`).
    /// Precedence: file < environment < flags.
    #[arg(long, env = "RVDB_CONFIG", global = true)]
    config: Option<std::path::PathBuf>,
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `rvdb_node=debug`.
    #[arg(long, env = "RVDB_LOG", default_value = "info,rmcp=warn", global = true)]
    log: String,
    /// Log format: pretty or json.
    #[arg(long, env = "RVDB_LOG_FORMAT", default_value = "pretty", global = true,
          value_parser = clap::builder::PossibleValuesParser::new(["pretty", "json"]))]
    log_format: String,
    #[command(flatten)]
    security: server::SecurityArgs,
    #[command(flatten)]
    index: IndexArgs,
    #[command(subcommand)]
    command: Command,
}

/// How indexes run in this process. The core reads no environment: these flags (and their `RVDB_…` variables)
/// are read here, once, and handed to every index through [`index_options`].
#[derive(Debug, clap::Args)]
struct IndexArgs {
    /// Instruction set of the distance kernels: auto (the CPU's best), avx512, avx2 or portable. A level the
    /// CPU lacks is lowered to the best one it has.
    #[arg(long, env = "RVDB_SIMD", default_value = "auto", global = true)]
    simd: String,
    /// Whether large flat indexes keep SQ8 codes and scan them first (exact either way).
    #[arg(long, env = "RVDB_FLAT_CODES", default_value_t = true, action = clap::ArgAction::Set, global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    flat_codes: bool,
    /// Whether the code scan uses AVX-512 VNNI where the CPU has it.
    #[arg(long, env = "RVDB_VNNI", default_value_t = true, action = clap::ArgAction::Set, global = true,
          value_parser = clap::builder::BoolishValueParser::new())]
    vnni: bool,
}

static INDEX_OPTIONS: std::sync::OnceLock<rvdb_core::options::IndexOptions> = std::sync::OnceLock::new();

impl IndexArgs {
    fn install(&self) -> anyhow::Result<()> {
        use rvdb_core::kernels::{Simd, SimdLevel};
        let simd = match self.simd.to_ascii_lowercase().as_str() {
            "auto" | "" => Simd::best(),
            level => Simd::at_most(level.parse::<SimdLevel>().map_err(|e| anyhow::anyhow!("--simd: {e}"))?),
        };
        let options = rvdb_core::options::IndexOptions { simd, flat_codes: self.flat_codes, vnni: self.vnni };
        INDEX_OPTIONS.set(options).map_err(|_| anyhow::anyhow!("index options set twice"))
    }
}

/// The index options this process was started with (the CPU's best before `main` installs them).
pub(crate) fn index_options() -> rvdb_core::options::IndexOptions {
    INDEX_OPTIONS.get().copied().unwrap_or_default()
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run rvdb embedded in one process with local data (the default way to start): manager + node + gateway.
    Serve(server::ServeArgs),
    /// Run a storage node (with --manager: as part of a cluster).
    Node(server::NodeCommand),
    /// Run the index manager of a cluster (catalog, placement, membership, catch-up).
    Manager(server::ManagerArgs),
    /// Run a gateway (MCP, REST, gRPC) over a cluster's index manager (--manager).
    Gateway(server::GatewayCommand),
    /// Serve MCP over stdin/stdout (for agents that launch their MCP servers): embedded, or a cluster (--manager).
    McpStdio(server::McpStdioArgs),
    /// Health check of a node, manager or gateway (exit code 0 = healthy); used by container health checks.
    Probe(ops::ProbeArgs),
    /// The cluster as the index manager sees it (JSON): node states, placement, optionally replica digests.
    ClusterStatus(ops::ClusterStatusArgs),
    /// Move one replica of a shard to another node while reads and writes continue (shard transfer).
    MoveShard(ops::MoveShardArgs),
    /// Move replicas until the up nodes hold balanced replica counts (the fewest moves, one at a time).
    Rebalance(ops::RebalanceArgs),
    /// Remove a node for good: its replicas are re-created on the other nodes, then it leaves the catalog.
    RemoveNode(ops::RemoveNodeArgs),
    /// Change a store's shard count (up or down) while it serves reads and writes; only points that change shard
    /// are copied.
    Reshard(ops::ReshardArgs),
    /// Cancel a running shard transfer (`--shard`) or reshard: it rolls back, as after a failure.
    Cancel(ops::CancelArgs),
    /// The config file and the settings in force (`rvdb config show`).
    #[command(subcommand)]
    Config(config::ConfigCommand),
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Benchmarks (flat search vs. faiss, insert throughput).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Installs the log subscriber; an invalid filter is an error naming the flag, never a silent fallback.
fn init_tracing(filter: &str, format: &str) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .map_err(|e| anyhow::anyhow!("--log / RVDB_LOG {filter:?} is not a valid log filter: {e}"))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    config::load(&args)?;
    let cli = Cli::parse();
    init_tracing(&cli.log, &cli.log_format)?;
    cli.security.install()?;
    cli.index.install()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => server::serve(args).await,
            Command::Node(args) => server::node(args).await,
            Command::Manager(args) => server::manager(args).await,
            Command::Gateway(args) => server::gateway(args).await,
            Command::McpStdio(args) => server::mcp_stdio(args).await,
            Command::Probe(args) => ops::probe(args).await,
            Command::ClusterStatus(args) => ops::cluster_status(args).await,
            Command::MoveShard(args) => ops::move_shard(args).await,
            Command::Rebalance(args) => ops::rebalance(args).await,
            Command::Reshard(args) => ops::reshard(args).await,
            Command::Cancel(args) => ops::cancel(args).await,
            Command::RemoveNode(args) => ops::remove_node(args).await,
            Command::Config(cmd) => config::run(cmd),
            Command::Client(cmd) => client::run(cmd).await,
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    })
}
