//! `rvdb`: one binary for every role.
//!
//! - `rvdb serve`: the embedded all-in-one default, data in `./data`, no setup: a storage node (gRPC on
//!   127.0.0.1:50051) and the MCP gateway (http://127.0.0.1:8080/mcp); the index manager joins with its issue.
//! - `rvdb manager`, `rvdb node --manager URL`, `rvdb gateway --manager URL`: the services of a cluster.
//!   `rvdb mcp-stdio`: MCP over stdio.
//! - client commands (`create-store`, `insert`, `search`, …) that talk gRPC to a node.
//! - `rvdb bench`: the benchmarks whose figures the README reports.
//!
//! Configuration mirrors the seed's `sys.config` keys as flags and `RVDB_…` environment variables.

mod bench;
mod client;
mod cluster_bench;
mod npy;
mod ops;
mod server;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "rvdb", version, about = "rvdb: a distributed vector database for AI agents")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax), e.g. `info`, `rvdb_node=debug`.
    #[arg(long, env = "RVDB_LOG", default_value = "info,rmcp=warn", global = true)]
    log: String,
    /// Log format: pretty or json.
    #[arg(long, env = "RVDB_LOG_FORMAT", default_value = "pretty", global = true)]
    log_format: String,
    #[command(flatten)]
    security: server::SecurityArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run rvdb embedded in one process with local data (the default way to start): storage node + MCP gateway.
    Serve(server::ServeArgs),
    /// Run a storage node (with --manager: as part of a cluster).
    Node(server::NodeCommand),
    /// Run the index manager of a cluster (catalog, placement, membership, catch-up).
    Manager(server::ManagerArgs),
    /// Run an MCP gateway over a cluster's index manager (--manager) or a list of storage nodes (--nodes).
    Gateway(server::GatewayCommand),
    /// Serve MCP over stdin/stdout (for agents that launch their MCP servers), on an embedded node or given nodes.
    McpStdio(server::McpStdioArgs),
    /// Health check of a node, manager or gateway (exit code 0 = healthy); used by container health checks.
    Probe(ops::ProbeArgs),
    /// The cluster as the index manager sees it (JSON): node states, placement, optionally replica digests.
    ClusterStatus(ops::ClusterStatusArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
    /// Benchmarks (flat search vs. faiss, insert throughput).
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

fn init_tracing(filter: &str, format: &str) {
    let filter =
        tracing_subscriber::EnvFilter::try_new(filter).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_tracing(&cli.log, &cli.log_format);
    cli.security.install()?;
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
            Command::Client(cmd) => client::run(cmd).await,
            Command::Bench(cmd) => bench::run(cmd).await,
        }
    })
}
