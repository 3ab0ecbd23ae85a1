//! The MCP tool catalogue: names, titles, descriptions written for an LLM, and annotations. The order here is the
//! order `tools/list` returns (fixed, as 2026-07-28 asks).
//!
//! Input and output schemas are not written here: they are the JSON Schemas (2020-12) of the tool's request and
//! response types in [`crate::api`], which the dispatcher ([`crate::mcp`]) parses and returns, and which the REST
//! API's OpenAPI document uses too.

use std::sync::Arc;

use rmcp::model::{Tool, ToolAnnotations};
use schemars::JsonSchema;

use crate::api::{self, *};
use crate::backup::{BackupInfo, ExportInfo, RestoreInfo};
use crate::gateway::StoreStats;

/// A tool's hints; `readOnlyHint` is not chosen here but taken from the operation table by [`tool`].
fn annotations(title: &str, destructive: bool, idempotent: bool) -> ToolAnnotations {
    ToolAnnotations::with_title(title).destructive(destructive).idempotent(idempotent).open_world(false)
}

/// A tool taking `In` and answering `Out`.
fn tool<In: JsonSchema, Out: JsonSchema>(
    name: &'static str,
    title: &str,
    description: &'static str,
    ann: ToolAnnotations,
) -> Tool {
    // read-only exactly when the operation needs only read access: what the gateway enforces for read-only keys
    let read_only = crate::ops::by_mcp_tool(name).is_some_and(|s| s.access == crate::ops::Access::Read);
    let ann = ann.read_only(read_only);
    Tool::new(name, description, Arc::new(api::input_schema::<In>()))
        .with_title(title)
        .with_raw_output_schema(Arc::new(api::output_schema::<Out>()))
        .with_annotations(ann)
}

/// Every tool the gateway serves, in `tools/list` order (built once: the schemas are derived at run time).
pub fn catalogue() -> Vec<Tool> {
    static CATALOGUE: std::sync::OnceLock<Vec<Tool>> = std::sync::OnceLock::new();
    CATALOGUE.get_or_init(build).clone()
}

fn build() -> Vec<Tool> {
    vec![
        tool::<CreateStoreArgs, StoreCreatedResult>(
            "create_store",
            "Create vector store",
            "Create a new, empty vector store. Every vector later inserted into it must have exactly `dimension` numbers. \
             `metric` decides what 'similar' means: cosine (default; direction only, best for text embeddings), euclidean, \
             manhattan, or dot. Fails if a store with this name already exists.",
            annotations("Create vector store", false, false),
        ),
        tool::<InsertTextsArgs, TextsInserted>(
            "insert_texts",
            "Store texts",
            "Store texts (notes, facts, documents) in a store created with an embedding model: the server turns \
             each text into a vector with the store's model and stores text, vector and metadata together. No \
             vectors needed. Without an id, a text's id is derived from its words, so storing the same text again \
             does not duplicate it. Sends progress notifications.",
            annotations("Store texts", false, true),
        ),
        tool::<SearchTextArgs, TextResults>(
            "search_text",
            "Search texts by meaning, by words, or both",
            "Find stored texts for a query written in words. mode dense (the default on a store created with an \
             embedding model): closest in meaning, `distance` lower for closer texts (cosine: 1 - similarity). \
             mode keyword (the default on other stores): BM25 over the texts' words, for exact names, error \
             codes and identifiers, `bm25` higher is better. mode hybrid: both lists fused (rrf by default), \
             `score` higher is better; `sources` says which list found each text. `filter` narrows by metadata \
             inside every retrieval, as in search_vectors; `score_threshold` drops dense results farther than \
             that distance.",
            annotations("Search texts", false, true),
        ),
        tool::<UpdateMetadataArgs, MetadataUpdated>(
            "update_metadata",
            "Update metadata",
            "Set and/or remove top-level metadata keys on points chosen by `ids` or by `filter` (e.g. mark notes \
             as done, tag a topic); other keys, texts and vectors stay as they are. `set` adds or replaces keys, \
             `unset` removes them. Returns how many points were updated.",
            annotations("Update metadata", false, true),
        ),
        tool::<DeletePointsArgs, PointsDeleted>(
            "delete_points",
            "Delete points",
            "Delete points (texts or vectors) by `ids`, or every point whose metadata matches `filter` (the same \
             filter as search_text). This cannot be undone. Returns how many points existed and were deleted.",
            annotations("Delete points", true, true),
        ),
        tool::<CountArgs, Counted>(
            "count",
            "Count points",
            "How many points a store holds, or how many match `filter` (the same filter as search_text).",
            annotations("Count points", false, true),
        ),
        tool::<ScrollArgs, ScrollPage>(
            "scroll",
            "Browse points",
            "List a store's points (texts, metadata) page by page in id order, optionally only those matching \
             `filter`. Pass `next_cursor` from a page as `cursor` to get the next one; there is no next page when \
             `next_cursor` is absent.",
            annotations("Browse points", false, true),
        ),
        tool::<InsertVectorArgs, VectorInserted>(
            "insert_vector",
            "Insert a vector",
            "Insert one vector with an id and optional JSON metadata into a store. If the id already exists, its vector and \
             metadata are replaced. To insert many vectors at once, use insert_vectors.",
            annotations("Insert a vector", true, true),
        ),
        tool::<SearchVectorsArgs, SearchResults>(
            "search_vectors",
            "Search similar vectors",
            "Find the k stored vectors nearest to a query vector. Results are ordered nearest first; `distance` is lower \
             for closer vectors (cosine: 1 - cosine similarity, euclidean: L2 distance, manhattan: L1 distance, dot: minus \
             the dot product). Each result carries its id and metadata.",
            annotations("Search similar vectors", false, true),
        ),
        tool::<StoreArgs, StoreSynced>(
            "sync_store",
            "Sync store to disk",
            "Flush a store's recent writes to disk and fsync them. Writes are already durable in the write-ahead log when \
             acknowledged; call this before a backup or a planned shutdown to make the data files current.",
            annotations("Sync store to disk", false, true),
        ),
        tool::<BackupArgs, BackupInfo>(
            "backup_store",
            "Back up a store",
            "Write a consistent, checksummed, compressed backup of a store into the server's backup directory while \
             writes continue. Returns the backup's name (use it with restore_store). Sends progress notifications.",
            annotations("Back up a store", false, false),
        ),
        tool::<RestoreArgs, RestoreInfo>(
            "restore_store",
            "Restore a backup",
            "Restore a backup (by name, from list_backups) into a NEW store; the original store is not touched. The \
             backup is verified (checksums, counts) before anything is created; if it is damaged nothing is restored. \
             `shards` may differ from the original. Sends progress notifications.",
            annotations("Restore a backup", false, false),
        ),
        tool::<ListBackupsArgs, BackupList>(
            "list_backups",
            "List backups",
            "List the backups in the server's backup directory, newest first, with their store, number of vectors, size and time.",
            annotations("List backups", false, true),
        ),
        tool::<NoArgs, StoreList>(
            "list_stores",
            "List vector stores",
            "List every vector store with its dimension, metric and number of vectors.",
            annotations("List vector stores", false, true),
        ),
        tool::<StoreArgs, StoreStats>(
            "describe_store",
            "Describe a store",
            "Statistics of one store: dimension, metric, index, shards, number of live and deleted vectors, memory and disk use.",
            annotations("Describe a store", false, true),
        ),
        tool::<StoreArgs, StoreDeleted>(
            "delete_store",
            "Delete a store",
            "Delete a store and every vector in it. This cannot be undone (make a backup first if the data matters).",
            annotations("Delete a store", true, true),
        ),
        tool::<GetVectorArgs, VectorFound>(
            "get_vector",
            "Get a vector by id",
            "Fetch one stored vector and its metadata by id. `found` is false if the id does not exist.",
            annotations("Get a vector by id", false, true),
        ),
        tool::<IdArgs, VectorDeleted>(
            "delete_vector",
            "Delete a vector",
            "Delete one vector by id. `deleted` is false if the id did not exist.",
            annotations("Delete a vector", true, true),
        ),
        tool::<InsertVectorsArgs, Upserted>(
            "insert_vectors",
            "Insert many vectors",
            "Insert a batch of vectors (each with id, vector and optional metadata) into a store; existing ids are replaced. \
             The whole batch is checked first: if any point is invalid nothing is written and the error names it. Sends \
             progress notifications when the request carries a progress token.",
            annotations("Insert many vectors", true, true),
        ),
        tool::<ExportArgs, ExportInfo>(
            "export_store",
            "Export a store to JSON",
            "Export every vector of a store with its metadata as JSON Lines (a header line, then one point per line) \
             into the server's export directory. Vectors round-trip exactly. Sends progress notifications.",
            annotations("Export a store to JSON", false, false),
        ),
        tool::<ImportArgs, RestoreInfo>(
            "import_store",
            "Import a store from JSON",
            "Create a NEW store from a JSON Lines export file (by file name, in the server's export directory: the \
             `file` that export_store returned). Every \
             line is checked; on an error the new store is removed again and the error names the line.",
            annotations("Import a store from JSON", false, false),
        ),
    ]
}
