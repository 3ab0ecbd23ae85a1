//! Client commands (`rvdb create-store`, `insert`, `search`, …): thin translations to the gateway's REST API,
//! so the CLI goes through the same operation layer, routing, placement and limits as MCP, REST and gRPC, and
//! works alike against `rvdb serve` and a cluster's gateway. Each prints the gateway's JSON answer on stdout;
//! a refusal prints the gateway's JSON error on stderr and exits with status 1.

use std::io::BufRead;

use anyhow::Context;
use http_body_util::{BodyExt, Full};
use serde_json::{Value, json};

#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The gateway's HTTP URL (where `rvdb serve` or `rvdb gateway` serves REST and MCP).
    #[arg(long = "url", alias = "addr", env = "RVDB_URL", default_value = "http://127.0.0.1:8080", global = true)]
    url: String,
}

#[derive(Debug, clap::Subcommand)]
pub enum ClientCommand {
    /// Create a store.
    CreateStore {
        name: String,
        /// Length of every vector; required unless --embedding is given (then it is the model's).
        #[arg(long)]
        dimension: Option<u32>,
        /// Embedding model that turns the store's texts into vectors (a local model, e.g. all-MiniLM-L6-v2).
        #[arg(long)]
        embedding: Option<String>,
        /// Keyword-search analysis and BM25 settings as JSON, e.g. '{"stemmer": "english", "stop_words_language":
        /// "english"}' (keys stemmer, stop_words_language, stop_words, k1, b).
        #[arg(long)]
        text_index: Option<String>,
        /// cosine, euclidean, manhattan or dot.
        #[arg(long, default_value = "cosine")]
        metric: String,
        /// flat (exact) or hnsw (approximate graph, built in the background); default: the server's
        /// default_index_type.
        #[arg(long)]
        index: Option<String>,
        /// none or sq8 (HNSW graph on 8-bit codes, re-scored on full vectors).
        #[arg(long)]
        quantization: Option<String>,
        /// Partitions spread over the storage nodes.
        #[arg(long)]
        shards: Option<u32>,
        /// Copies of each shard on distinct nodes.
        #[arg(long)]
        replication_factor: Option<u32>,
        /// Replica acks a write waits for (0 = a majority).
        #[arg(long)]
        write_consistency: Option<u32>,
        /// HNSW: links per node.
        #[arg(long)]
        m: Option<u32>,
        /// HNSW: beam width while building.
        #[arg(long)]
        ef_construction: Option<u32>,
        /// HNSW: default beam width of a search.
        #[arg(long)]
        ef_search: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Drop a store and all its points.
    DropStore {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// List stores with their statistics.
    ListStores {
        #[command(flatten)]
        target: Target,
    },
    /// Statistics of one store.
    Stats {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Rebuild an HNSW store's graph from its points in the background (searches keep using the current graph).
    RebuildIndex {
        name: String,
        #[command(flatten)]
        target: Target,
    },
    /// Insert (or replace) one point.
    Insert {
        store: String,
        #[arg(long)]
        id: String,
        /// JSON array of numbers.
        #[arg(long)]
        vector: String,
        /// JSON object.
        #[arg(long)]
        metadata: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Insert points from a JSON-lines file (`{"id":…, "vector":[…], "metadata":{…}}` per line), in batches.
    Import {
        store: String,
        file: std::path::PathBuf,
        #[arg(long, default_value_t = 1000)]
        batch: usize,
        #[command(flatten)]
        target: Target,
    },
    /// Get points by id.
    Get {
        store: String,
        ids: Vec<String>,
        /// Leave the vectors out.
        #[arg(long)]
        no_vector: bool,
        #[command(flatten)]
        target: Target,
    },
    /// Delete points by id, or every point matching --filter.
    Delete {
        store: String,
        ids: Vec<String>,
        /// Metadata filter (JSON), instead of ids.
        #[arg(long, conflicts_with = "ids")]
        filter: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Set (--set '{"k": v}') and remove (--unset k) metadata keys of points by id, or of every point matching
    /// --filter; vectors and other keys are kept.
    UpdateMetadata {
        store: String,
        ids: Vec<String>,
        /// Metadata filter (JSON), instead of ids.
        #[arg(long, conflicts_with = "ids")]
        filter: Option<String>,
        /// JSON object: keys to set.
        #[arg(long)]
        set: Option<String>,
        /// A key to remove (repeatable).
        #[arg(long)]
        unset: Vec<String>,
        #[command(flatten)]
        target: Target,
    },
    /// How many points a store holds (matching --filter, if given).
    Count {
        store: String,
        #[arg(long)]
        filter: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// One page of points in id order; --cursor takes the next_cursor a page returned.
    Scroll {
        store: String,
        #[arg(long)]
        filter: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        cursor: Option<String>,
        #[arg(long)]
        with_vector: bool,
        #[command(flatten)]
        target: Target,
    },
    /// k nearest neighbours of a vector.
    Search {
        store: String,
        /// JSON array of numbers.
        #[arg(long)]
        vector: String,
        #[arg(short, long)]
        k: Option<u32>,
        #[arg(long)]
        with_vector: bool,
        /// Metadata filter (JSON), e.g. '{"must":[{"key":"lang","match":{"value":"en"}}]}'.
        #[arg(long)]
        filter: Option<String>,
        /// HNSW beam width for this search.
        #[arg(long)]
        ef: Option<u32>,
        /// Exact search even on an HNSW store.
        #[arg(long)]
        exact: bool,
        /// Only results at most this distance away.
        #[arg(long)]
        score_threshold: Option<f32>,
        #[command(flatten)]
        target: Target,
    },
    /// Store texts in a store created with --embedding (embedded by the server): one text per argument, or
    /// one per line of --file.
    InsertTexts {
        store: String,
        texts: Vec<String>,
        /// A file with one text per line.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        #[command(flatten)]
        target: Target,
    },
    /// Search a store created with --embedding by meaning: the query in words.
    SearchText {
        store: String,
        query: String,
        #[arg(short, long)]
        k: Option<u32>,
        /// Metadata filter (JSON), as for search.
        #[arg(long)]
        filter: Option<String>,
        /// Only results at most this distance away (cosine: 1 - similarity).
        #[arg(long)]
        score_threshold: Option<f32>,
        /// dense (by meaning) | keyword (BM25 over the texts' words) | hybrid (both, fused); default: dense on a
        /// store with an embedding model, keyword on one without.
        #[arg(long)]
        mode: Option<String>,
        /// hybrid: rrf (default) | dbsf.
        #[arg(long)]
        fusion: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Flush a store to disk and fsync the WAL of its replicas.
    Sync {
        store: String,
        #[command(flatten)]
        target: Target,
    },
    /// Back a store up (a checksummed snapshot in the server's backup_dir).
    Backup {
        store: String,
        /// Backup name (default <store>-<time>).
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// List backups (optionally of one store).
    ListBackups {
        #[arg(long)]
        store: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Restore a backup into a new store.
    Restore {
        backup: String,
        /// Name of the new store.
        #[arg(long)]
        store: String,
        /// Shards of the new store (default: as in the backup).
        #[arg(long)]
        shards: Option<u32>,
        #[command(flatten)]
        target: Target,
    },
    /// Delete a backup.
    DeleteBackup {
        backup: String,
        #[command(flatten)]
        target: Target,
    },
    /// Export a store as JSON Lines into the server's export directory.
    ExportStore {
        store: String,
        /// File name (default <store>-<time>.jsonl).
        #[arg(long)]
        file: Option<String>,
        #[command(flatten)]
        target: Target,
    },
    /// Import a JSON Lines export (a file name as export-store returned it) into a new store.
    ImportStore {
        store: String,
        #[arg(long)]
        file: String,
        #[command(flatten)]
        target: Target,
    },
}

/// The gateway's REST API at one URL.
struct Rest {
    base: String,
    client: hyper_util::client::legacy::Client<hyper_util::client::legacy::connect::HttpConnector, Full<bytes::Bytes>>,
}

/// A store or backup name in a URL path: percent-encoded, so a name the gateway would refuse reaches it (and
/// gets its error) instead of changing the path.
fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Rest {
    fn new(target: &Target) -> anyhow::Result<Rest> {
        anyhow::ensure!(
            target.url.starts_with("http://"),
            "--url {:?}: the CLI speaks plain http:// to the gateway (for a TLS gateway use its REST API with an \
             HTTPS client)",
            target.url
        );
        let mut connector = hyper_util::client::legacy::connect::HttpConnector::new();
        connector.set_nodelay(true);
        let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(connector);
        Ok(Rest { base: format!("{}/v1", target.url.trim_end_matches('/')), client })
    }

    /// One call; the answer's JSON, or an error carrying the gateway's JSON error.
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> anyhow::Result<Value> {
        let uri = format!("{}{path}", self.base);
        let mut req = hyper::Request::builder().method(method).uri(&uri).header("accept", "application/json");
        if let Some(key) = rvdb_proto::rpc::client_authorization() {
            req = req.header("authorization", key);
        }
        let bytes = match &body {
            Some(b) => {
                req = req.header("content-type", "application/json");
                bytes::Bytes::from(b.to_string())
            }
            None => bytes::Bytes::new(),
        };
        let resp = self.client.request(req.body(Full::new(bytes))?).await.with_context(|| format!("{method} {uri}"))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await?.to_bytes();
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .with_context(|| format!("{method} {uri}: HTTP {status} with a body that is not JSON"))?
        };
        if status.is_success() { Ok(value) } else { Err(Refused(value).into()) }
    }
}

/// The gateway refused a call: its JSON error, printed as is.
#[derive(Debug)]
pub struct Refused(pub Value);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string_pretty(&self.0).unwrap_or_else(|_| self.0.to_string()))
    }
}

impl std::error::Error for Refused {}

fn parse_json(flag: &str, s: &str) -> anyhow::Result<Value> {
    serde_json::from_str(s).with_context(|| format!("{flag} must be JSON"))
}

fn print(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string()));
}

/// A JSON object of the given fields, leaving out the ones not given (`None`).
fn fields(pairs: &[(&str, Option<Value>)]) -> Value {
    Value::Object(pairs.iter().filter_map(|(k, v)| v.clone().map(|v| (k.to_string(), v))).collect())
}

fn opt<T: serde::Serialize>(v: Option<T>) -> Option<Value> {
    v.map(|v| json!(v))
}

pub async fn run(cmd: ClientCommand) -> anyhow::Result<()> {
    match execute(cmd).await {
        Ok(v) => {
            print(&v);
            Ok(())
        }
        Err(e) => match e.downcast::<Refused>() {
            Ok(Refused(body)) => {
                eprintln!("{}", serde_json::to_string_pretty(&body).unwrap_or_else(|_| body.to_string()));
                std::process::exit(1);
            }
            Err(e) => Err(e),
        },
    }
}

async fn execute(cmd: ClientCommand) -> anyhow::Result<Value> {
    use ClientCommand::*;
    match cmd {
        CreateStore {
            name,
            dimension,
            metric,
            index,
            quantization,
            shards,
            replication_factor,
            write_consistency,
            m,
            ef_construction,
            ef_search,
            embedding,
            text_index,
            target,
        } => {
            let body = fields(&[
                ("name", Some(json!(name))),
                ("dimension", opt(dimension)),
                ("text_index", text_index.map(|t| parse_json("--text-index", &t)).transpose()?),
                ("embedding", embedding.map(|model| json!({"provider": "local", "model": model}))),
                ("metric", Some(json!(metric))),
                ("index", opt(index)),
                ("quantization", opt(quantization)),
                ("shards", opt(shards)),
                ("replication_factor", opt(replication_factor)),
                ("write_consistency", opt(write_consistency)),
                ("m", opt(m)),
                ("ef_construction", opt(ef_construction)),
                ("ef_search", opt(ef_search)),
            ]);
            Rest::new(&target)?.call("POST", "/stores", Some(body)).await
        }
        DropStore { name, target } => {
            Rest::new(&target)?.call("DELETE", &format!("/stores/{}", segment(&name)), None).await
        }
        ListStores { target } => Rest::new(&target)?.call("GET", "/stores", None).await,
        Stats { name, target } => Rest::new(&target)?.call("GET", &format!("/stores/{}", segment(&name)), None).await,
        RebuildIndex { name, target } => {
            Rest::new(&target)?.call("POST", &format!("/stores/{}/rebuild-index", segment(&name)), None).await
        }
        Insert { store, id, vector, metadata, target } => {
            let point = fields(&[
                ("id", Some(json!(id))),
                ("vector", Some(parse_json("--vector", &vector)?)),
                ("metadata", metadata.map(|m| parse_json("--metadata", &m)).transpose()?),
            ]);
            let path = format!("/stores/{}/points", segment(&store));
            Rest::new(&target)?.call("PUT", &path, Some(json!({"points": [point]}))).await
        }
        Import { store, file, batch, target } => {
            let rest = Rest::new(&target)?;
            let path = format!("/stores/{}/points", segment(&store));
            let reader = std::io::BufReader::new(
                std::fs::File::open(&file).with_context(|| format!("opening {}", file.display()))?,
            );
            let (mut points, mut total) = (Vec::new(), 0u64);
            let send = async |points: Vec<Value>| -> anyhow::Result<u64> {
                let r = rest.call("PUT", &path, Some(json!({"points": points}))).await?;
                Ok(r["inserted"].as_u64().unwrap_or(0))
            };
            for (n, line) in reader.lines().enumerate() {
                let line = line?;
                if line.trim().is_empty() {
                    continue;
                }
                let mut v: Value = serde_json::from_str(&line).with_context(|| format!("line {}", n + 1))?;
                if let Some(id) = v["id"].as_u64() {
                    v["id"] = json!(id.to_string());
                }
                points.push(v);
                if points.len() >= batch.max(1) {
                    total += send(std::mem::take(&mut points)).await?;
                }
            }
            if !points.is_empty() {
                total += send(points).await?;
            }
            Ok(json!({"store": store, "imported": total}))
        }
        Get { store, ids, no_vector, target } => {
            let path = format!("/stores/{}/points/get", segment(&store));
            Rest::new(&target)?.call("POST", &path, Some(json!({"ids": ids, "with_vector": !no_vector}))).await
        }
        Delete { store, ids, filter, target } => {
            let path = format!("/stores/{}/points/delete", segment(&store));
            let body = match filter {
                Some(f) => json!({"filter": parse_json("--filter", &f)?}),
                None => json!({"ids": ids}),
            };
            Rest::new(&target)?.call("POST", &path, Some(body)).await
        }
        UpdateMetadata { store, ids, filter, set, unset, target } => {
            let path = format!("/stores/{}/points/metadata", segment(&store));
            let body = fields(&[
                ("ids", (filter.is_none()).then(|| json!(ids))),
                ("filter", filter.map(|f| parse_json("--filter", &f)).transpose()?),
                ("set", set.map(|s| parse_json("--set", &s)).transpose()?),
                ("unset", (!unset.is_empty()).then(|| json!(unset))),
            ]);
            Rest::new(&target)?.call("POST", &path, Some(body)).await
        }
        Count { store, filter, target } => {
            let path = format!("/stores/{}/points/count", segment(&store));
            let body = fields(&[("filter", filter.map(|f| parse_json("--filter", &f)).transpose()?)]);
            Rest::new(&target)?.call("POST", &path, Some(body)).await
        }
        Scroll { store, filter, limit, cursor, with_vector, target } => {
            let path = format!("/stores/{}/points/scroll", segment(&store));
            let body = fields(&[
                ("filter", filter.map(|f| parse_json("--filter", &f)).transpose()?),
                ("limit", opt(limit)),
                ("cursor", opt(cursor)),
                ("with_vector", Some(json!(with_vector))),
            ]);
            Rest::new(&target)?.call("POST", &path, Some(body)).await
        }
        Search { store, vector, k, with_vector, filter, ef, exact, score_threshold, target } => {
            let body = fields(&[
                ("vector", Some(parse_json("--vector", &vector)?)),
                ("k", opt(k)),
                ("with_vector", Some(json!(with_vector))),
                ("filter", filter.map(|f| parse_json("--filter", &f)).transpose()?),
                ("ef", opt(ef)),
                ("exact", Some(json!(exact))),
                ("score_threshold", opt(score_threshold)),
            ]);
            Rest::new(&target)?.call("POST", &format!("/stores/{}/search", segment(&store)), Some(body)).await
        }
        InsertTexts { store, mut texts, file, target } => {
            if let Some(file) = file {
                let content = std::fs::read_to_string(&file)
                    .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
                texts.extend(content.lines().filter(|l| !l.trim().is_empty()).map(str::to_string));
            }
            anyhow::ensure!(!texts.is_empty(), "no texts: give them as arguments or with --file");
            let documents: Vec<Value> = texts.into_iter().map(|t| json!({"text": t})).collect();
            let path = format!("/stores/{}/texts", segment(&store));
            Rest::new(&target)?.call("PUT", &path, Some(json!({"documents": documents}))).await
        }
        SearchText { store, query, k, filter, score_threshold, mode, fusion, target } => {
            let body = fields(&[
                ("query", Some(json!(query))),
                ("mode", opt(mode)),
                ("fusion", opt(fusion)),
                ("k", opt(k)),
                ("filter", filter.map(|f| parse_json("--filter", &f)).transpose()?),
                ("score_threshold", opt(score_threshold)),
            ]);
            Rest::new(&target)?.call("POST", &format!("/stores/{}/texts/search", segment(&store)), Some(body)).await
        }
        Sync { store, target } => {
            Rest::new(&target)?.call("POST", &format!("/stores/{}/sync", segment(&store)), None).await
        }
        Backup { store, name, target } => {
            let path = format!("/stores/{}/backups", segment(&store));
            Rest::new(&target)?.call("POST", &path, Some(fields(&[("name", opt(name))]))).await
        }
        ListBackups { store, target } => {
            let path = match store {
                Some(s) => format!("/backups?store={}", segment(&s)),
                None => "/backups".to_string(),
            };
            Rest::new(&target)?.call("GET", &path, None).await
        }
        Restore { backup, store, shards, target } => {
            let path = format!("/backups/{}/restore", segment(&backup));
            let body = fields(&[("store", Some(json!(store))), ("shards", opt(shards))]);
            Rest::new(&target)?.call("POST", &path, Some(body)).await
        }
        DeleteBackup { backup, target } => {
            Rest::new(&target)?.call("DELETE", &format!("/backups/{}", segment(&backup)), None).await
        }
        ExportStore { store, file, target } => {
            let path = format!("/stores/{}/export", segment(&store));
            Rest::new(&target)?.call("POST", &path, Some(fields(&[("file", opt(file))]))).await
        }
        ImportStore { store, file, target } => {
            let path = format!("/stores/{}/import", segment(&store));
            Rest::new(&target)?.call("POST", &path, Some(json!({"file": file}))).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_change_the_path() {
        assert_eq!(segment("docs-1_a.b"), "docs-1_a.b");
        assert_eq!(segment("a/../b"), "a%2F..%2Fb");
        assert_eq!(segment("x?y#z"), "x%3Fy%23z");
    }

    /// The operation table's CLI names are this CLI's commands, and every client command is in the table (so its
    /// access and its names on the other surfaces are known).
    #[test]
    fn the_operation_table_names_exactly_these_commands() {
        use clap::CommandFactory;
        use rvdb_gateway::ops::OPERATIONS;
        let cli = crate::Cli::command();
        let commands: Vec<&str> = cli.get_subcommands().map(|c| c.get_name()).collect();
        for s in OPERATIONS {
            if let Some(name) = s.cli {
                assert!(commands.contains(&name), "{:?}: no command {name}", s.op);
            }
        }
        let client = <ClientCommand as clap::Subcommand>::augment_subcommands(clap::Command::new("client"));
        for c in client.get_subcommands() {
            assert!(OPERATIONS.iter().any(|s| s.cli == Some(c.get_name())), "{} is not in the table", c.get_name());
        }
    }

    #[test]
    fn absent_fields_are_left_out() {
        assert_eq!(fields(&[("a", Some(json!(1))), ("b", None)]), json!({"a": 1}));
    }
}
