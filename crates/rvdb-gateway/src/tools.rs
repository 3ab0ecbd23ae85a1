//! The MCP tool catalogue: names, titles, descriptions written for an LLM, JSON Schemas (2020-12) for input and
//! output, and annotations. The order here is the order `tools/list` returns (fixed, as 2026-07-28 asks).

use std::sync::Arc;

use rmcp::model::{JsonObject, Tool, ToolAnnotations};
use serde_json::{Value, json};

pub const STORE_NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";

fn obj(v: Value) -> Arc<JsonObject> {
    match v {
        Value::Object(m) => Arc::new(m),
        _ => Arc::new(JsonObject::new()),
    }
}

fn schema(properties: Value, required: &[&str]) -> Arc<JsonObject> {
    obj(json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": false,
    }))
}

fn store_prop() -> Value {
    json!({"type": "string", "pattern": STORE_NAME_PATTERN, "description": "Name of the vector store."})
}

fn vector_prop(what: &str) -> Value {
    json!({"type": "array", "items": {"type": "number"}, "minItems": 1,
           "description": format!("{what}: finite numbers, exactly as many as the store's dimension.")})
}

fn metadata_prop() -> Value {
    json!({"type": "object", "description": "Arbitrary JSON object stored with the vector and returned with results (at most 256 KiB)."})
}

fn stats_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "dimension": {"type": "integer"},
            "metric": {"type": "string", "enum": ["cosine", "euclidean", "manhattan", "dot"]},
            "index": {"type": "string"},
            "shards": {"type": "integer"},
            "replication_factor": {"type": "integer"},
            "points": {"type": "integer", "description": "Live vectors in the store."},
            "deleted_points": {"type": "integer"},
            "memory_bytes": {"type": "integer"},
            "memory_bytes_per_vector": {"type": "integer", "description": "In-memory bytes per live vector: vectors, graph links, metadata, ids."},
            "disk_bytes": {"type": "integer"},
            "index_status": {"type": "string", "enum": ["none", "building", "ready"], "description": "HNSW graph state; while building, searches are exact."},
            "quantization": {"type": "string", "enum": ["none", "sq8"]},
        },
        "required": ["name", "dimension", "metric", "index", "shards", "replication_factor", "points"],
    })
}

fn backup_info() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string"}, "store": {"type": "string"}, "points": {"type": "integer"},
            "bytes": {"type": "integer"}, "created_at": {"type": "string"}, "rvdb_version": {"type": "string"},
            "path": {"type": "string"},
        },
        "required": ["name", "store", "points", "bytes", "created_at"],
    })
}

fn output(properties: Value, required: &[&str]) -> Arc<JsonObject> {
    obj(json!({"type": "object", "properties": properties, "required": required}))
}

/// A tool's hints; `readOnlyHint` is not chosen here but taken from the operation table by [`tool`].
fn annotations(title: &str, destructive: bool, idempotent: bool) -> ToolAnnotations {
    ToolAnnotations::with_title(title).destructive(destructive).idempotent(idempotent).open_world(false)
}

fn tool(
    name: &'static str,
    title: &str,
    description: &'static str,
    input: Arc<JsonObject>,
    out: Arc<JsonObject>,
    ann: ToolAnnotations,
) -> Tool {
    // read-only exactly when the operation needs only read access: what the gateway enforces for read-only keys
    let read_only = crate::ops::by_mcp_tool(name).is_some_and(|s| s.access == crate::ops::Access::Read);
    let ann = ann.read_only(read_only);
    Tool::new(name, description, input).with_title(title).with_raw_output_schema(out).with_annotations(ann)
}

/// Every tool the gateway serves, in `tools/list` order.
pub fn catalogue() -> Vec<Tool> {
    let point_out = json!({
        "type": "object",
        "properties": {
            "id": {"type": "string"},
            "vector": {"type": "array", "items": {"type": "number"}},
            "metadata": {"type": "object"},
            "version": {"type": "integer"},
        },
        "required": ["id", "metadata", "version"],
    });
    vec![
        tool(
            "create_store",
            "Create vector store",
            "Create a new, empty vector store. Every vector later inserted into it must have exactly `dimension` numbers. \
             `metric` decides what 'similar' means: cosine (default; direction only, best for text embeddings), euclidean, \
             manhattan, or dot. Fails if a store with this name already exists.",
            schema(
                json!({
                    "store": store_prop(),
                    "dimension": {"type": "integer", "minimum": 1, "maximum": 65536, "description": "Length of every vector in the store, e.g. 384 or 1536."},
                    "metric": {"type": "string", "enum": ["cosine", "euclidean", "manhattan", "dot"], "default": "cosine"},
                    "shards": {"type": "integer", "minimum": 1, "maximum": 1024, "default": 1, "description": "Partitions spread over storage nodes."},
                    "replication_factor": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1, "description": "Copies of each shard on distinct nodes."},
                    "write_consistency": {"type": "integer", "minimum": 0, "maximum": 16, "default": 0, "description": "Replica acks a write waits for; 0 = a majority of the replicas that are up. At most replication_factor."},
                    "index": {"type": "string", "enum": ["flat", "hnsw"], "description": "flat: exact search, best below ~100k vectors. hnsw: approximate graph search, fast at any size (built in the background; searches are exact until it is ready). Default: the server's default_index_type."},
                    "m": {"type": "integer", "minimum": 2, "maximum": 128, "default": 16, "description": "HNSW: links per node (more = better recall, more memory)."},
                    "ef_construction": {"type": "integer", "minimum": 1, "default": 200, "description": "HNSW: beam width while building."},
                    "ef_search": {"type": "integer", "minimum": 1, "default": 64, "description": "HNSW: default beam width of a search (more = better recall, slower)."},
                    "quantization": {"type": "string", "enum": ["none", "sq8"], "default": "none", "description": "sq8: the HNSW graph keeps 8-bit codes (4x less memory per vector); results are re-scored on full vectors."},
                }),
                &["store", "dimension"],
            ),
            output(
                json!({"store": {"type": "string"}, "dimension": {"type": "integer"}, "metric": {"type": "string"},
                       "shards": {"type": "integer"}, "replication_factor": {"type": "integer"},
                       "write_consistency": {"type": "integer"}, "index": {"type": "string"}}),
                &["store", "dimension", "metric", "shards", "replication_factor", "index"],
            ),
            annotations("Create vector store", false, false),
        ),
        tool(
            "insert_vector",
            "Insert a vector",
            "Insert one vector with an id and optional JSON metadata into a store. If the id already exists, its vector and \
             metadata are replaced. To insert many vectors at once, use insert_vectors.",
            schema(
                json!({"store": store_prop(), "id": {"type": "string", "minLength": 1, "maxLength": 512, "description": "Unique id of the vector in the store."},
                       "vector": vector_prop("The vector"), "metadata": metadata_prop()}),
                &["store", "id", "vector"],
            ),
            output(
                json!({"store": {"type": "string"}, "id": {"type": "string"}, "inserted": {"type": "boolean"}}),
                &["store", "id", "inserted"],
            ),
            annotations("Insert a vector", true, true),
        ),
        tool(
            "search_vectors",
            "Search similar vectors",
            "Find the k stored vectors nearest to a query vector. Results are ordered nearest first; `distance` is lower \
             for closer vectors (cosine: 1 - cosine similarity, euclidean: L2 distance, manhattan: L1 distance, dot: minus \
             the dot product). Each result carries its id and metadata.",
            schema(
                json!({"store": store_prop(), "vector": vector_prop("The query vector"),
                       "k": {"type": "integer", "minimum": 1, "maximum": 10000, "default": 10, "description": "How many results to return."},
                       "with_vector": {"type": "boolean", "default": false, "description": "Also return each result's vector."},
                       "with_metadata": {"type": "boolean", "default": true},
                       "filter": {"type": "object", "description": "Only return vectors whose metadata matches, e.g. {\"must\": [{\"key\": \"lang\", \"match\": {\"value\": \"en\"}}, {\"key\": \"year\", \"range\": {\"gte\": 2020}}], \"must_not\": [{\"key\": \"draft\", \"match\": {\"value\": true}}]}. Clauses: must (all), should (at least one), must_not (none); conditions: match {value | any: [...]}, range {gt, gte, lt, lte}, exists (true/false); keys may be dotted paths (author.name)."},
                       "ef": {"type": "integer", "minimum": 1, "maximum": 100000, "description": "HNSW stores: beam width for this search (default: the store's ef_search)."},
                       "exact": {"type": "boolean", "default": false, "description": "Exact search even on an HNSW store."}}),
                &["store", "vector"],
            ),
            output(
                json!({"store": {"type": "string"}, "results": {"type": "array", "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string"}, "distance": {"type": "number"}, "metadata": {"type": "object"},
                                   "vector": {"type": "array", "items": {"type": "number"}}},
                    "required": ["id", "distance"]}}}),
                &["store", "results"],
            ),
            annotations("Search similar vectors", false, true),
        ),
        tool(
            "sync_store",
            "Sync store to disk",
            "Flush a store's recent writes to disk and fsync them. Writes are already durable in the write-ahead log when \
             acknowledged; call this before a backup or a planned shutdown to make the data files current.",
            schema(json!({"store": store_prop()}), &["store"]),
            output(json!({"store": {"type": "string"}, "synced": {"type": "boolean"}}), &["store", "synced"]),
            annotations("Sync store to disk", false, true),
        ),
        tool(
            "backup_store",
            "Back up a store",
            "Write a consistent, checksummed, compressed backup of a store into the server's backup directory while \
             writes continue. Returns the backup's name (use it with restore_store). Sends progress notifications.",
            schema(
                json!({"store": store_prop(),
                       "name": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$", "description": "Backup name (not `exports`, which is reserved); default <store>-<time>."}}),
                &["store"],
            ),
            obj(backup_info()),
            annotations("Back up a store", false, false),
        ),
        tool(
            "restore_store",
            "Restore a backup",
            "Restore a backup (by name, from list_backups) into a NEW store; the original store is not touched. The \
             backup is verified (checksums, counts) before anything is created; if it is damaged nothing is restored. \
             `shards` may differ from the original. Sends progress notifications.",
            schema(
                json!({"backup": {"type": "string", "minLength": 1, "description": "Backup name as list_backups shows it."},
                       "store": {"type": "string", "pattern": STORE_NAME_PATTERN, "description": "Name of the new store to create."},
                       "shards": {"type": "integer", "minimum": 1, "maximum": 1024}}),
                &["backup", "store"],
            ),
            output(
                json!({"backup": {"type": "string"}, "store": {"type": "string"}, "points": {"type": "integer"}, "shards": {"type": "integer"}}),
                &["backup", "store", "points", "shards"],
            ),
            annotations("Restore a backup", false, false),
        ),
        tool(
            "list_backups",
            "List backups",
            "List the backups in the server's backup directory, newest first, with their store, number of vectors, size and time.",
            schema(
                json!({"store": {"type": "string", "pattern": STORE_NAME_PATTERN, "description": "Only backups of this store."}}),
                &[],
            ),
            output(json!({"backups": {"type": "array", "items": backup_info()}}), &["backups"]),
            annotations("List backups", false, true),
        ),
        tool(
            "list_stores",
            "List vector stores",
            "List every vector store with its dimension, metric and number of vectors.",
            schema(json!({}), &[]),
            output(json!({"stores": {"type": "array", "items": stats_schema()}}), &["stores"]),
            annotations("List vector stores", false, true),
        ),
        tool(
            "describe_store",
            "Describe a store",
            "Statistics of one store: dimension, metric, index, shards, number of live and deleted vectors, memory and disk use.",
            schema(json!({"store": store_prop()}), &["store"]),
            obj(stats_schema()),
            annotations("Describe a store", false, true),
        ),
        tool(
            "delete_store",
            "Delete a store",
            "Delete a store and every vector in it. This cannot be undone (make a backup first if the data matters).",
            schema(json!({"store": store_prop()}), &["store"]),
            output(json!({"store": {"type": "string"}, "deleted": {"type": "boolean"}}), &["store", "deleted"]),
            annotations("Delete a store", true, true),
        ),
        tool(
            "get_vector",
            "Get a vector by id",
            "Fetch one stored vector and its metadata by id. `found` is false if the id does not exist.",
            schema(
                json!({"store": store_prop(), "id": {"type": "string", "minLength": 1, "maxLength": 512},
                       "with_vector": {"type": "boolean", "default": true}}),
                &["store", "id"],
            ),
            output(
                json!({"store": {"type": "string"}, "found": {"type": "boolean"}, "point": point_out}),
                &["store", "found"],
            ),
            annotations("Get a vector by id", false, true),
        ),
        tool(
            "delete_vector",
            "Delete a vector",
            "Delete one vector by id. `deleted` is false if the id did not exist.",
            schema(
                json!({"store": store_prop(), "id": {"type": "string", "minLength": 1, "maxLength": 512}}),
                &["store", "id"],
            ),
            output(
                json!({"store": {"type": "string"}, "id": {"type": "string"}, "deleted": {"type": "boolean"}}),
                &["store", "id", "deleted"],
            ),
            annotations("Delete a vector", true, true),
        ),
        tool(
            "insert_vectors",
            "Insert many vectors",
            "Insert a batch of vectors (each with id, vector and optional metadata) into a store; existing ids are replaced. \
             The whole batch is checked first: if any point is invalid nothing is written and the error names it. Sends \
             progress notifications when the request carries a progress token.",
            schema(
                json!({"store": store_prop(), "points": {"type": "array", "minItems": 1, "items": {
                    "type": "object",
                    "properties": {"id": {"type": "string", "minLength": 1, "maxLength": 512}, "vector": vector_prop("The vector"), "metadata": metadata_prop()},
                    "required": ["id", "vector"], "additionalProperties": false}}}),
                &["store", "points"],
            ),
            output(
                json!({"store": {"type": "string"}, "inserted": {"type": "integer"}, "stale": {"type": "integer", "description": "Points skipped because a newer write of the same id was already stored."}}),
                &["store", "inserted", "stale"],
            ),
            annotations("Insert many vectors", true, true),
        ),
        tool(
            "export_store",
            "Export a store to JSON",
            "Export every vector of a store with its metadata as JSON Lines (a header line, then one point per line) \
             into the server's export directory. Vectors round-trip exactly. Sends progress notifications.",
            schema(
                json!({"store": store_prop(),
                       "file": {"type": "string", "pattern": "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$", "description": "File name; default <store>-<time>.jsonl."}}),
                &["store"],
            ),
            output(
                json!({"store": {"type": "string"}, "file": {"type": "string", "description": "File name, as import_store takes it."}, "path": {"type": "string", "description": "Where the server wrote it."}, "points": {"type": "integer"}, "bytes": {"type": "integer"}}),
                &["store", "file", "path", "points", "bytes"],
            ),
            annotations("Export a store to JSON", false, false),
        ),
        tool(
            "import_store",
            "Import a store from JSON",
            "Create a NEW store from a JSON Lines export file (by file name, in the server's export directory: the \
             `file` that export_store returned). Every \
             line is checked; on an error the new store is removed again and the error names the line.",
            schema(
                json!({"file": {"type": "string", "minLength": 1}, "store": {"type": "string", "pattern": STORE_NAME_PATTERN, "description": "Name of the new store."}}),
                &["file", "store"],
            ),
            output(
                json!({"backup": {"type": "string"}, "store": {"type": "string"}, "points": {"type": "integer"}, "shards": {"type": "integer"}}),
                &["store", "points"],
            ),
            annotations("Import a store from JSON", false, false),
        ),
    ]
}
