//! The JSON messages of every operation, once: the request and response types MCP tools and REST routes share,
//! and from which both surfaces' schemas are derived.
//!
//! A type here is the one definition of what an operation takes: its fields, defaults, limits (from
//! `rvdb_core::types`) and the descriptions a reader (or an LLM) sees. Its JSON Schema comes from the
//! `schemars` derive ([`input_schema`], [`output_schema`]): MCP's `tools/list` serves it as the tool's
//! `inputSchema` / `outputSchema` ([`crate::tools`]), and the OpenAPI document takes the same schema through
//! [`openapi_schema!`] (schemars' 2020-12 output is OpenAPI 3.1's schema dialect), so no schema is written by
//! hand and the two cannot drift apart.
//!
//! Where a surface carries part of a request elsewhere (REST puts the store in the path), the MCP request is the
//! REST body plus that part: `SearchVectors { store, #[serde(flatten)] query: SearchRequest }`. The checks that
//! need more than a schema (a vector's dimension, metadata size, HNSW parameters, names) run once, in the domain
//! ([`Gateway`](crate::Gateway), [`BackupManager`](crate::backup::BackupManager),
//! [`CreateStore::into_config`](crate::gateway::CreateStore::into_config)), whichever surface the call came in by.
//! gRPC has its own messages (protobuf, `proto/rvdb/v1/store.proto`) and translates them into the same domain
//! calls ([`crate::grpc`]).

use rvdb_core::types::{MAX_DIMENSION, MAX_EF, MAX_K, MAX_POINT_ID_BYTES, MAX_SHARDS};
use rvdb_core::{IndexKind, Metric, Quantization, StoreConfig};
use schemars::generate::{Contract, SchemaSettings};
use schemars::{JsonSchema, Schema};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::backup::{BackupInfo, ExportInfo, RestoreInfo};
use crate::gateway::{PointInput, PointOutput, SearchHit, SearchParams, StoreStats};

/// Store names: what `rvdb_core::types::validate_store_name` accepts.
pub const STORE_NAME_PATTERN: &str = "^[A-Za-z0-9_-]{1,64}$";
/// Backup and export file names: what `crate::backup::validate_file_name` accepts.
pub const FILE_NAME_PATTERN: &str = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,127}$";
/// Most replicas of a shard (`StoreConfig::validate`).
pub const MAX_REPLICATION_FACTOR: u32 = 16;

/// The schema of a request type: what a client may send (2020-12, subschemas inlined, so a tool's schema reads
/// on its own).
pub fn input_schema<T: JsonSchema>() -> Map<String, Value> {
    schema_of::<T>(Contract::Deserialize)
}

/// The schema of a response type: what the server sends.
pub fn output_schema<T: JsonSchema>() -> Map<String, Value> {
    schema_of::<T>(Contract::Serialize)
}

fn schema_of<T: JsonSchema>(contract: Contract) -> Map<String, Value> {
    let generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.inline_subschemas = true;
            s.contract = contract;
        })
        .into_generator();
    let schema: Schema = generator.into_root_schema_for::<T>();
    let mut map = match schema.to_value() {
        Value::Object(map) => map,
        _ => Map::new(), // `true`: any value; no message has that schema
    };
    // a type's Rust name says nothing to a client; the description does
    map.remove("title");
    map
}

/// The OpenAPI schema of a message: its JSON Schema, as [`input_schema`] / [`output_schema`] give it, read into
/// utoipa's model. A schema utoipa cannot represent is a bug here, found by the test that reads every message.
pub fn openapi_schema<T: JsonSchema>(
    contract: Contract,
) -> Result<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>, serde_json::Error> {
    let mut map = schema_of::<T>(contract);
    map.remove("$schema");
    serde_json::from_value(Value::Object(map))
}

/// Implements utoipa's `ToSchema` for messages from their `JsonSchema` (the first list: requests, the second:
/// responses), so `#[utoipa::path]` can name them as bodies.
#[macro_export]
macro_rules! openapi_schema {
    (requests: $($req:ty),* ; responses: $($resp:ty),* $(,)?) => {
        $( $crate::openapi_schema!(@one $req, Deserialize); )*
        $( $crate::openapi_schema!(@one $resp, Serialize); )*
    };
    (@one $t:ty, $contract:ident) => {
        impl utoipa::PartialSchema for $t {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $crate::api::openapi_schema::<$t>(schemars::generate::Contract::$contract).unwrap_or_else(|e| {
                    tracing::error!(schema = stringify!($t), error = %e, "a message's schema is not valid OpenAPI");
                    utoipa::openapi::RefOr::T(utoipa::openapi::schema::Schema::default())
                })
            }
        }
        impl utoipa::ToSchema for $t {}
    };
}

/// `Deserialize` for a request that is another message plus a few fields (`{store, ...SearchRequest}`): the
/// fields are taken out of the object first, and the rest is read as the inner message with the path of any
/// error kept (`k: invalid value: integer `-1`, expected u32`). serde's own `flatten` would lose that path and
/// the inner message's list of expected fields; the schema is still the derived (flattened) one.
macro_rules! flattened_request {
    ($name:ident { $($field:ident: $fty:ty $(= $default:path)?),* } + $inner:ident: $ity:ty) => {
        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let mut map = Map::<String, Value>::deserialize(d)?;
                $(
                    let $field: $fty = match map.contains_key(stringify!($field)) {
                        $( false => $default(), )?
                        _ => take_field(&mut map, stringify!($field)).map_err(serde::de::Error::custom)?,
                    };
                )*
                let $inner: $ity = read_rest(map).map_err(serde::de::Error::custom)?;
                Ok($name { $($field,)* $inner })
            }
        }
    };
}

/// Field `name` of a request object, removed from it; a missing one is read from `null` (so an `Option` is
/// `None`) and named when that fails. An error inside the value keeps its path (`vector[2]: invalid type: …`).
fn take_field<T: serde::de::DeserializeOwned>(map: &mut Map<String, Value>, name: &str) -> Result<T, String> {
    match map.remove(name) {
        Some(value) => serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            match path.as_str() {
                "." => format!("{name}: {}", e.inner()),
                p if p.starts_with('[') => format!("{name}{p}: {}", e.inner()),
                p => format!("{name}.{p}: {}", e.inner()),
            }
        }),
        None => serde_json::from_value(Value::Null).map_err(|_| format!("missing field `{name}`")),
    }
}

/// The rest of a request object as the inner message, naming the path of an error.
fn read_rest<T: serde::de::DeserializeOwned>(map: Map<String, Value>) -> Result<T, String> {
    serde_path_to_error::deserialize(Value::Object(map)).map_err(|e| {
        let path = e.path().to_string();
        if path == "." { e.inner().to_string() } else { format!("{path}: {}", e.inner()) }
    })
}

// ---------------------------------------------------------------------------------------------------------------
// Stores

/// A metric, index kind or quantization given by name: parsed as the domain parses it (case-insensitive, with
/// its aliases such as `l2` or `ip`), so every surface accepts the same names and refuses others with the same
/// words ("unknown metric 'hamming': …").
fn by_name<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    Option::<String>::deserialize(d)?.map(|s| s.parse::<T>().map_err(serde::de::Error::custom)).transpose()
}

fn metric_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["cosine", "euclidean", "manhattan", "dot"],
        "default": "cosine",
        "description": "What \"similar\" means: cosine (direction only; best for text embeddings), euclidean (L2), \
                        manhattan (L1), or dot (minus the dot product).",
    })
}

fn index_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["flat", "hnsw"],
        "description": "flat: exact search, best below ~100k vectors. hnsw: approximate graph search, fast at any \
                        size (built in the background; searches are exact until it is ready). Default: the \
                        server's default_index_type.",
    })
}

fn quantization_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": ["none", "sq8"],
        "default": "none",
        "description": "sq8: the HNSW graph keeps 8-bit codes (4x less memory per vector); results are re-scored \
                        on full vectors.",
    })
}

/// Everything a new store is created with but its name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreSettings {
    /// Length of every vector in the store, e.g. 384 or 1536. Required unless `embedding` is given (then it is
    /// the model's, and if given must match it).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_DIMENSION))]
    pub dimension: Option<u32>,
    #[serde(default, deserialize_with = "by_name")]
    #[schemars(schema_with = "metric_schema")]
    pub metric: Option<Metric>,
    /// Partitions spread over the storage nodes (default 1).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_SHARDS))]
    pub shards: Option<u32>,
    /// Copies of each shard on distinct nodes (default 1).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_REPLICATION_FACTOR))]
    pub replication_factor: Option<u32>,
    /// Replica acks a write waits for; 0 (default) = a majority of replication_factor when it is 3 or more, of
    /// the replicas that are up below that. At most replication_factor.
    #[serde(default)]
    #[schemars(range(min = 0, max = MAX_REPLICATION_FACTOR))]
    pub write_consistency: Option<u32>,
    #[serde(default, deserialize_with = "by_name")]
    #[schemars(schema_with = "index_schema")]
    pub index: Option<IndexKind>,
    /// HNSW: links per node (default 16; more = better recall, more memory).
    #[serde(default)]
    #[schemars(range(min = 2, max = 128))]
    pub m: Option<u32>,
    /// HNSW: beam width while building (default 200).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_EF))]
    pub ef_construction: Option<u32>,
    /// HNSW: default beam width of a search (default 64; more = better recall, slower).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_EF))]
    pub ef_search: Option<u32>,
    #[serde(default, deserialize_with = "by_name")]
    #[schemars(schema_with = "quantization_schema")]
    pub quantization: Option<Quantization>,
    /// Bind the store to an embedding model, so it takes text (stored and queried with the same model); its
    /// dimension is the model's.
    #[serde(default)]
    pub embedding: Option<EmbeddingChoice>,
    /// How the store's texts (metadata key `_text`, as insert_texts stores them) are analysed and scored for
    /// keyword (BM25) search. Default: words lowercased, no stop words, no stemming, k1 1.2, b 0.75.
    #[serde(default)]
    pub text_index: Option<TextIndexChoice>,
}

/// A store's text analysis and BM25 parameters (fixed at creation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"stemmer": "english", "stop_words_language": "english"}))]
pub struct TextIndexChoice {
    /// A Snowball stemmer, so that `running` matches `runs`: arabic, danish, dutch, english, finnish, french,
    /// german, greek, hungarian, italian, norwegian, portuguese, romanian, russian, spanish, swedish, tamil,
    /// turkish.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stemmer: Option<String>,
    /// A built-in stop-word list to leave out: english.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stop_words_language: Option<String>,
    /// More words to leave out.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = rvdb_core::text::MAX_STOP_WORDS))]
    pub stop_words: Vec<String>,
    /// BM25 term-frequency saturation (default 1.2).
    #[serde(default)]
    #[schemars(range(min = 0, max = 100))]
    pub k1: Option<f64>,
    /// BM25 length normalisation, 0 to 1 (default 0.75).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1))]
    pub b: Option<f64>,
}

impl From<TextIndexChoice> for rvdb_core::TextIndexSpec {
    fn from(c: TextIndexChoice) -> Self {
        let d = Self::default();
        Self {
            stemmer: c.stemmer,
            stop_words_language: c.stop_words_language,
            stop_words: c.stop_words,
            k1: c.k1.map_or(d.k1, |x| x as f32),
            b: c.b.map_or(d.b, |x| x as f32),
        }
    }
}

/// An `f32` as the decimal it was written as (`1.2`, not `1.2000000476837158`), for JSON.
fn shortest(x: f32) -> f64 {
    x.to_string().parse().unwrap_or(f64::from(x))
}

impl From<&rvdb_core::TextIndexSpec> for TextIndexChoice {
    fn from(s: &rvdb_core::TextIndexSpec) -> Self {
        Self {
            stemmer: s.stemmer.clone(),
            stop_words_language: s.stop_words_language.clone(),
            stop_words: s.stop_words.clone(),
            k1: Some(shortest(s.k1)),
            b: Some(shortest(s.b)),
        }
    }
}

/// The model that embeds a store's texts.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmbeddingChoice {
    /// `local`: in the server's process, from the model files in its models directory (no network). `openai`:
    /// the OpenAI-compatible endpoint the server is configured with (`--openai-base-url`).
    #[serde(default = "local_provider")]
    #[schemars(schema_with = "provider_schema")]
    pub provider: String,
    /// The model's name: a directory in the server's models directory (`local`), or the provider's model name
    /// (`openai`, e.g. text-embedding-3-small).
    #[serde(default = "default_model")]
    #[schemars(length(min = 1, max = 256))]
    pub model: String,
}

fn local_provider() -> String {
    crate::embedding::LOCAL.into()
}

fn default_model() -> String {
    rvdb_embed::DEFAULT_MODEL.into()
}

fn provider_schema(_: &mut schemars::SchemaGenerator) -> Schema {
    schemars::json_schema!({"type": "string", "enum": ["local", "openai"], "default": "local"})
}

impl StoreSettings {
    /// The domain's request for a store `name` with these settings.
    pub fn into_request(self, name: String) -> crate::gateway::CreateStore {
        crate::gateway::CreateStore {
            name,
            dimension: self.dimension,
            metric: self.metric,
            shards: self.shards,
            replication_factor: self.replication_factor,
            write_consistency: self.write_consistency,
            index: self.index,
            quantization: self.quantization,
            m: self.m,
            ef_construction: self.ef_construction,
            ef_search: self.ef_search,
            embedding: self.embedding.map(|e| (e.provider, e.model)),
            text_index: self.text_index.map(Into::into),
        }
    }
}

/// A new store (REST `POST /v1/stores`).
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"name": "docs", "dimension": 4, "metric": "cosine"}))]
pub struct CreateStore {
    /// Name of the store: letters, digits, `_` and `-`.
    #[schemars(pattern(STORE_NAME_PATTERN), length(min = 1, max = 64))]
    pub name: String,
    #[serde(flatten)]
    pub settings: StoreSettings,
}

flattened_request!(CreateStore { name: String } + settings: StoreSettings);

/// A new store (MCP `create_store`).
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateStoreArgs {
    /// Name of the new store: letters, digits, `_` and `-`.
    #[schemars(pattern(STORE_NAME_PATTERN), length(min = 1, max = 64))]
    pub store: String,
    #[serde(flatten)]
    pub settings: StoreSettings,
}

flattened_request!(CreateStoreArgs { store: String } + settings: StoreSettings);

/// A store's configuration as created.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StoreSettingsOut {
    pub dimension: u32,
    pub metric: String,
    pub index: String,
    pub quantization: String,
    pub shards: u32,
    pub replication_factor: u32,
    pub write_consistency: u32,
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub embedding: Option<crate::gateway::EmbeddingInfo>,
    /// Text analysis and BM25 parameters for keyword search.
    pub text_index: TextIndexChoice,
}

impl From<&StoreConfig> for StoreSettingsOut {
    fn from(c: &StoreConfig) -> Self {
        Self {
            dimension: c.dimension,
            metric: c.metric.as_str().to_string(),
            index: c.index.kind.as_str().to_string(),
            quantization: c.index.quantization.as_str().to_string(),
            shards: c.shards,
            replication_factor: c.replication_factor,
            write_consistency: c.write_consistency,
            m: c.index.hnsw.m,
            ef_construction: c.index.hnsw.ef_construction,
            ef_search: c.index.hnsw.ef_search,
            embedding: c.embedding.as_ref().map(Into::into),
            text_index: (&c.text_index).into(),
        }
    }
}

/// The store created (REST).
#[derive(Debug, Serialize, JsonSchema)]
pub struct StoreCreated {
    pub name: String,
    #[serde(flatten)]
    pub settings: StoreSettingsOut,
}

/// The store created (MCP).
#[derive(Debug, Serialize, JsonSchema)]
pub struct StoreCreatedResult {
    pub store: String,
    #[serde(flatten)]
    pub settings: StoreSettingsOut,
}

/// One store named.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
}

/// No arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoArgs {}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StoreList {
    pub stores: Vec<StoreStats>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StoreDeleted {
    pub store: String,
    pub deleted: bool,
}

/// Graph rebuilds started, one per replica held by a node that is not down (a replica already building its
/// graph starts the rebuild when that build ends).
#[derive(Debug, Serialize, JsonSchema)]
pub struct IndexRebuild {
    pub store: String,
    pub started: u32,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct StoreSynced {
    pub store: String,
    pub synced: bool,
}

// ---------------------------------------------------------------------------------------------------------------
// Points

/// A point to insert or replace.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PointIn {
    /// Unique id of the point in the store (1-512 bytes, no control characters).
    #[schemars(length(min = 1, max = MAX_POINT_ID_BYTES))]
    pub id: String,
    /// Exactly the store's dimension of finite numbers (not all zero under cosine).
    #[schemars(length(min = 1, max = MAX_DIMENSION))]
    pub vector: Vec<f32>,
    /// A JSON object (at most 256 KiB) stored with the vector, returned with results and matched by filters.
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub metadata: Option<Value>,
}

impl PointIn {
    /// The domain's point; `field` names the metadata in an error (`metadata`, `points[3].metadata`).
    pub fn into_point(self, field: &str) -> crate::error::Result<PointInput> {
        PointInput::from_request(self.id, self.vector, self.metadata, field)
    }
}

/// A batch of points (REST `PUT …/points`). The whole batch is checked first: if any point is invalid nothing is
/// written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"points": [
    {"id": "a", "vector": [0.1, 0.2, 0.3, 0.4], "metadata": {"lang": "en", "year": 2024}},
    {"id": "b", "vector": [0.4, 0.3, 0.2, 0.1], "metadata": {"lang": "de", "year": 2019}}
]}))]
pub struct UpsertPoints {
    #[schemars(length(min = 1))]
    pub points: Vec<PointIn>,
}

/// MCP `insert_vectors`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertVectorsArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub batch: UpsertPoints,
}

flattened_request!(InsertVectorsArgs { store: String } + batch: UpsertPoints);

/// MCP `insert_vector`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertVectorArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub point: PointIn,
}

flattened_request!(InsertVectorArgs { store: String } + point: PointIn);

impl UpsertPoints {
    /// The domain's points, each checked; the first bad one is named by its index.
    pub fn into_points(self) -> crate::error::Result<Vec<PointInput>> {
        self.points.into_iter().enumerate().map(|(i, p)| p.into_point(&format!("points[{i}].metadata"))).collect()
    }
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct Upserted {
    pub store: String,
    /// Points written.
    pub inserted: u64,
    /// Points skipped because a newer write of the same id was already stored.
    pub stale: u64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VectorInserted {
    pub store: String,
    pub id: String,
    /// False if a newer write of the same id was already stored.
    pub inserted: bool,
}

fn yes() -> bool {
    true
}

/// Points by id (REST `POST …/points/get`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"ids": ["a", "b"], "with_vector": false}))]
pub struct GetPoints {
    /// Point ids (1-512 bytes of UTF-8 each, no control characters).
    #[schemars(length(min = 1), inner(length(min = 1, max = MAX_POINT_ID_BYTES)))]
    pub ids: Vec<String>,
    /// Also return the vectors.
    #[serde(default = "yes")]
    pub with_vector: bool,
}

/// The points found, in the order asked; ids that do not exist are left out.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Points {
    pub points: Vec<PointOutput>,
}

/// MCP `get_vector`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetVectorArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[schemars(length(min = 1, max = MAX_POINT_ID_BYTES))]
    pub id: String,
    /// Also return the vector.
    #[serde(default = "yes")]
    pub with_vector: bool,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VectorFound {
    pub store: String,
    pub found: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub point: Option<PointOutput>,
}

/// Points to delete, by ids or by a filter (REST `POST …/points/delete`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"ids": ["a"]}))]
pub struct DeletePoints {
    /// Point ids (1-512 bytes of UTF-8 each, no control characters). Give this or `filter`.
    #[serde(default)]
    #[schemars(length(min = 1), inner(length(min = 1, max = MAX_POINT_ID_BYTES)))]
    pub ids: Option<Vec<String>>,
    /// Delete every point whose metadata matches (the same filter as search). Give this or `ids`.
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub filter: Option<Value>,
}

impl DeletePoints {
    pub fn selector(self) -> Result<crate::points::Selector, crate::GatewayError> {
        crate::points::Selector::from_request(self.ids, self.filter)
    }
}

/// MCP `delete_points`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DeletePointsArgs {
    /// Name of the store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub which: DeletePoints,
}

flattened_request!(DeletePointsArgs { store: String } + which: DeletePoints);

#[derive(Debug, Serialize, JsonSchema)]
pub struct PointsDeleted {
    pub store: String,
    /// Points that existed and are now deleted.
    pub deleted: u64,
}

/// MCP `delete_vector`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[schemars(length(min = 1, max = MAX_POINT_ID_BYTES))]
    pub id: String,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct VectorDeleted {
    pub store: String,
    pub id: String,
    /// False if the id did not exist.
    pub deleted: bool,
}

/// Metadata keys to set and to remove on points chosen by ids or by a filter (REST `POST …/points/metadata`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"ids": ["a"], "set": {"status": "done"}, "unset": ["draft"]}))]
pub struct UpdateMetadata {
    /// Point ids. Give this or `filter`.
    #[serde(default)]
    #[schemars(length(min = 1), inner(length(min = 1, max = MAX_POINT_ID_BYTES)))]
    pub ids: Option<Vec<String>>,
    /// Update every point whose metadata matches (the same filter as search). Give this or `ids`.
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub filter: Option<Value>,
    /// Top-level keys and their new values (other keys are kept).
    #[serde(default)]
    pub set: Map<String, Value>,
    /// Top-level keys to remove.
    #[serde(default)]
    #[schemars(inner(length(min = 1)))]
    pub unset: Vec<String>,
}

impl UpdateMetadata {
    pub fn into_parts(self) -> Result<(crate::points::Selector, crate::points::MetadataUpdate), crate::GatewayError> {
        let selector = crate::points::Selector::from_request(self.ids, self.filter)?;
        Ok((selector, crate::points::MetadataUpdate { set: self.set, unset: self.unset }))
    }
}

/// MCP `update_metadata`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMetadataArgs {
    /// Name of the store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub update: UpdateMetadata,
}

flattened_request!(UpdateMetadataArgs { store: String } + update: UpdateMetadata);

#[derive(Debug, Serialize, JsonSchema)]
pub struct MetadataUpdated {
    pub store: String,
    /// Points that existed and were updated.
    pub updated: u64,
}

/// How many points match (REST `POST …/points/count`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"filter": {"must": [{"key": "topic", "match": {"value": "deploys"}}]}}))]
pub struct CountPoints {
    /// Count only points whose metadata matches (the same filter as search); every point without one.
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub filter: Option<Value>,
}

/// MCP `count`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CountArgs {
    /// Name of the store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub query: CountPoints,
}

flattened_request!(CountArgs { store: String } + query: CountPoints);

#[derive(Debug, Serialize, JsonSchema)]
pub struct Counted {
    pub store: String,
    pub count: u64,
}

/// One page of points in id order (REST `POST …/points/scroll`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"limit": 100, "filter": {"must": [{"key": "topic", "match": {"value": "deploys"}}]}}))]
pub struct ScrollPoints {
    /// Only points whose metadata matches (the same filter as search).
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub filter: Option<Value>,
    /// Most points in the page.
    #[serde(default = "crate::points::default_scroll_limit")]
    #[schemars(range(min = 1, max = MAX_K))]
    pub limit: u32,
    /// `next_cursor` of the previous page, as returned; leave out for the first page.
    #[serde(default)]
    #[schemars(length(min = 1))]
    pub cursor: Option<String>,
    /// Also return each point's vector.
    #[serde(default)]
    pub with_vector: bool,
    /// Return each point's metadata.
    #[serde(default = "yes")]
    pub with_metadata: bool,
}

impl Default for ScrollPoints {
    /// An empty body: the first page with the defaults the schema states.
    fn default() -> Self {
        Self {
            filter: None,
            limit: crate::points::default_scroll_limit(),
            cursor: None,
            with_vector: false,
            with_metadata: true,
        }
    }
}

impl ScrollPoints {
    pub fn into_params(self) -> crate::points::ScrollParams {
        crate::points::ScrollParams {
            filter: self.filter,
            limit: self.limit,
            cursor: self.cursor,
            with_vector: self.with_vector,
            with_metadata: self.with_metadata,
        }
    }
}

/// MCP `scroll`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScrollArgs {
    /// Name of the store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub page: ScrollPoints,
}

flattened_request!(ScrollArgs { store: String } + page: ScrollPoints);

/// Points in id order; `next_cursor` fetches the next page (absent on the last one). A cursor stays valid: it
/// is a position in the id order, not server state.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ScrollPage {
    pub store: String,
    pub points: Vec<PointOutput>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<String>,
}

/// What every k-NN query takes besides what it looks for (a vector, or a text): one definition for
/// `search_vectors` and `search_text`, on MCP and REST alike.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchOptions {
    /// How many results to return.
    #[serde(default = "crate::gateway::default_k")]
    #[schemars(range(min = 1, max = MAX_K))]
    pub k: u32,
    /// Only points whose metadata matches, e.g. `{"must": [{"key": "lang", "match": {"value": "en"}}, {"key":
    /// "year", "range": {"gte": 2020}}], "must_not": [{"key": "draft", "match": {"value": true}}]}`. Clauses: must
    /// (all), should (at least one), must_not (none); conditions: match {value | any: [...]}, range {gt, gte, lt,
    /// lte}, exists (true/false); keys may be dotted paths (`author.name`).
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub filter: Option<Value>,
    /// HNSW stores: beam width for this search (default: the store's ef_search).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_EF))]
    pub ef: Option<u32>,
    /// Exact search even on an HNSW store.
    #[serde(default)]
    pub exact: bool,
    /// Only results at most this distance from the query (lower is closer, as `distance` in the results; cosine:
    /// 0.3 keeps similarity ≥ 0.7). Fewer than k results may come back: none when nothing stored is that close.
    #[serde(default)]
    pub score_threshold: Option<f32>,
    /// Also return each result's vector.
    #[serde(default)]
    pub with_vector: bool,
    /// Return each result's metadata.
    #[serde(default = "yes")]
    pub with_metadata: bool,
}

impl SearchOptions {
    /// The domain's search parameters.
    pub fn into_params(self) -> SearchParams {
        SearchParams {
            k: self.k,
            with_vector: self.with_vector,
            with_metadata: self.with_metadata,
            filter: self.filter,
            ef: self.ef,
            exact: self.exact,
            score_threshold: self.score_threshold,
        }
    }
}

/// A k-nearest-neighbour query (REST `POST …/search`).
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"vector": [0.1, 0.2, 0.3, 0.4], "k": 3,
    "filter": {"must": [{"key": "lang", "match": {"value": "en"}}]}}))]
pub struct SearchRequest {
    /// The query vector: the store's dimension of finite numbers.
    #[schemars(length(min = 1, max = MAX_DIMENSION))]
    pub vector: Vec<f32>,
    #[serde(flatten)]
    pub options: SearchOptions,
}

flattened_request!(SearchRequest { vector: Vec<f32> } + options: SearchOptions);

impl SearchRequest {
    /// The query vector and the domain's search parameters.
    pub fn into_parts(self) -> (Vec<f32>, SearchParams) {
        (self.vector, self.options.into_params())
    }
}

/// MCP `search_vectors`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchVectorsArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub query: SearchRequest,
}

flattened_request!(SearchVectorsArgs { store: String } + query: SearchRequest);

/// Nearest first. `distance` is lower for closer points (cosine: 1 - cosine similarity, euclidean: L2,
/// manhattan: L1, dot: minus the dot product); it saturates at ±3.4028235e38 when it overflows `f32`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SearchResults {
    pub store: String,
    pub results: Vec<SearchHit>,
}

// ---------------------------------------------------------------------------------------------------------------
// Backups, export and import

/// Options of a backup; the REST body may be left out.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"name": "docs-nightly"}))]
pub struct CreateBackup {
    /// Backup name (not `exports`, which is reserved); default `<store>-<time>`.
    #[serde(default)]
    #[schemars(pattern(FILE_NAME_PATTERN))]
    pub name: Option<String>,
}

/// MCP `backup_store`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BackupArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub options: CreateBackup,
}

flattened_request!(BackupArgs { store: String } + options: CreateBackup);

/// Where to restore a backup: a NEW store (the original is not touched), optionally with another shard count.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"store": "docs-restored"}))]
pub struct RestoreBackup {
    /// Name of the new store to create.
    #[schemars(pattern(STORE_NAME_PATTERN), length(min = 1, max = 64))]
    pub store: String,
    /// Shards of the new store (default: as in the backup).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_SHARDS))]
    pub shards: Option<u32>,
}

/// MCP `restore_store`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RestoreArgs {
    /// Backup name as list_backups shows it.
    #[schemars(length(min = 1))]
    pub backup: String,
    #[serde(flatten)]
    pub target: RestoreBackup,
}

flattened_request!(RestoreArgs { backup: String } + target: RestoreBackup);

/// MCP `list_backups`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListBackupsArgs {
    /// Only backups of this store.
    #[serde(default)]
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: Option<String>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BackupList {
    pub backups: Vec<BackupInfo>,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct BackupDeleted {
    pub backup: String,
    pub deleted: bool,
}

/// Options of an export; the REST body may be left out.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"file": "docs.jsonl"}))]
pub struct ExportStore {
    /// File name in the server's export directory; default `<store>-<time>.jsonl`.
    #[serde(default)]
    #[schemars(pattern(FILE_NAME_PATTERN))]
    pub file: Option<String>,
}

/// MCP `export_store`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportArgs {
    /// Name of the vector store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub options: ExportStore,
}

flattened_request!(ExportArgs { store: String } + options: ExportStore);

/// The export file to create the store from (REST `POST …/import`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"file": "docs.jsonl"}))]
pub struct ImportStore {
    /// File name in the server's export directory: the `file` that export returned.
    #[schemars(pattern(FILE_NAME_PATTERN))]
    pub file: String,
}

/// MCP `import_store`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportArgs {
    /// Name of the new store.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub source: ImportStore,
}

flattened_request!(ImportArgs { store: String } + source: ImportStore);

/// The store created from an export file (REST).
#[derive(Debug, Serialize, JsonSchema)]
pub struct Imported {
    pub file: String,
    pub store: String,
    pub points: u64,
    pub shards: u32,
}

// ---------------------------------------------------------------------------------------------------------------
// Texts (stores bound to an embedding model)

/// A text to store: embedded by the store's model and stored with its vector and metadata.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentIn {
    /// Id of the point (1-512 bytes); default: derived from the text, so the same text is stored once.
    #[serde(default)]
    #[schemars(length(min = 1, max = MAX_POINT_ID_BYTES))]
    pub id: Option<String>,
    /// The text (at most 64 KiB; the model reads its first 256 tokens, all of it is stored and returned).
    #[schemars(length(min = 1, max = crate::text::MAX_TEXT_BYTES))]
    pub text: String,
    /// A JSON object stored with the text and matched by filters (not the key `_text`, which holds the text).
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub metadata: Option<Value>,
}

/// Documents to store (REST `PUT …/texts`). All are checked before any is embedded or written.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"documents": [
    {"text": "The deploy failed with error E1234 on the build server.", "metadata": {"source": "chat"}},
    {"id": "note-2", "text": "Alice prefers short answers."}
]}))]
pub struct InsertTexts {
    #[schemars(length(min = 1))]
    pub documents: Vec<DocumentIn>,
}

impl InsertTexts {
    pub fn into_documents(self) -> Vec<crate::text::Document> {
        self.documents
            .into_iter()
            .map(|d| crate::text::Document { id: d.id, text: d.text, metadata: d.metadata.unwrap_or(Value::Null) })
            .collect()
    }
}

/// MCP `insert_texts`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InsertTextsArgs {
    /// Name of a store created with an embedding model.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub batch: InsertTexts,
}

flattened_request!(InsertTextsArgs { store: String } + batch: InsertTexts);

#[derive(Debug, Serialize, JsonSchema)]
pub struct TextsInserted {
    pub store: String,
    /// Documents written.
    pub inserted: u64,
    /// Documents skipped because a newer write of the same id was already stored.
    pub stale: u64,
    /// The documents' ids, in order (derived from the text where none was given).
    pub ids: Vec<String>,
}

/// A search by meaning (REST `POST …/texts/search`).
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"query": "why did the deploy fail?", "k": 3}))]
pub struct SearchTextRequest {
    /// What to look for, in words; embedded by the store's model.
    #[schemars(length(min = 1, max = crate::text::MAX_TEXT_BYTES))]
    pub query: String,
    /// Return each result's text.
    #[serde(default = "yes")]
    pub with_text: bool,
    /// dense: nearest by meaning (the store's embedding model). keyword: best by BM25 over the stored texts
    /// (exact words: names, codes, identifiers). hybrid: both, fused. Default: dense on a store with an
    /// embedding model, keyword on one without.
    #[serde(default)]
    pub mode: Option<crate::hybrid::SearchMode>,
    /// hybrid: how the two lists are fused: rrf (Reciprocal Rank Fusion, default) or dbsf (scores normalised
    /// by each list's mean ± 3 standard deviations, then added).
    #[serde(default)]
    pub fusion: Option<crate::hybrid::FusionMethod>,
    /// hybrid, rrf: the k of 1 / (k + rank) (default 60).
    #[serde(default)]
    #[schemars(range(max = 100_000))]
    pub rrf_k: Option<u32>,
    /// hybrid: weight of the dense list (default 1).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub dense_weight: Option<f32>,
    /// hybrid: weight of the keyword list (default 1).
    #[serde(default)]
    #[schemars(range(min = 0, max = 1000))]
    pub keyword_weight: Option<f32>,
    /// hybrid: candidates each retrieval returns before fusion (default max(2k, 20)).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_K))]
    pub prefetch: Option<u32>,
    #[serde(flatten)]
    pub options: SearchOptions,
}

flattened_request!(SearchTextRequest {
    query: String,
    with_text: bool = yes,
    mode: Option<crate::hybrid::SearchMode>,
    fusion: Option<crate::hybrid::FusionMethod>,
    rrf_k: Option<u32>,
    dense_weight: Option<f32>,
    keyword_weight: Option<f32>,
    prefetch: Option<u32>
} + options: SearchOptions);

impl SearchTextRequest {
    /// The query text, the domain's search parameters, `with_text`, and how to retrieve.
    pub fn into_parts(self) -> (String, SearchParams, bool, crate::hybrid::TextQuery) {
        let d = crate::hybrid::TextQuery::default();
        let how = crate::hybrid::TextQuery {
            mode: self.mode,
            fusion: self.fusion.unwrap_or(d.fusion),
            rrf_k: self.rrf_k.unwrap_or(d.rrf_k),
            dense_weight: self.dense_weight.unwrap_or(d.dense_weight),
            keyword_weight: self.keyword_weight.unwrap_or(d.keyword_weight),
            prefetch: self.prefetch,
        };
        (self.query, self.options.into_params(), self.with_text, how)
    }
}

/// MCP `search_text`.
#[derive(Debug, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SearchTextArgs {
    /// Name of a store created with an embedding model.
    #[schemars(pattern(STORE_NAME_PATTERN))]
    pub store: String,
    #[serde(flatten)]
    pub query: SearchTextRequest,
}

flattened_request!(SearchTextArgs { store: String } + query: SearchTextRequest);

/// A document found.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TextHitOut {
    pub id: String,
    /// From the dense retrieval: lower is closer (cosine: 1 - cosine similarity); always a finite number.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance: Option<f32>,
    /// From the keyword retrieval: the BM25 score, higher is better.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bm25: Option<f32>,
    /// hybrid: the fused score, higher is better (results are in its order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<f32>,
    /// The retrievals that found this document: dense and/or keyword.
    pub sources: Vec<crate::text::Source>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub metadata: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vector: Option<Vec<f32>>,
}

impl From<crate::text::TextHit> for TextHitOut {
    fn from(h: crate::text::TextHit) -> Self {
        Self {
            id: h.id,
            distance: h.distance.map(crate::gateway::finite),
            bm25: h.bm25.map(crate::gateway::finite),
            score: h.score.map(crate::gateway::finite),
            sources: h.sources,
            text: h.text,
            metadata: h.metadata,
            vector: h.vector,
        }
    }
}

/// Best first: nearest (dense), highest BM25 (keyword) or highest fused score (hybrid).
#[derive(Debug, Serialize, JsonSchema)]
pub struct TextResults {
    pub store: String,
    pub results: Vec<TextHitOut>,
}

// ---------------------------------------------------------------------------------------------------------------
// Embeddings (OpenAI-compatible `POST /v1/embeddings`)

/// Most texts one embeddings request may carry (OpenAI's limit too).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

/// Text in, vectors out, as OpenAI's embeddings API takes it, so OpenAI clients (and rvdb's own `openai`
/// provider) can use the server's models.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"input": ["The quick brown fox", "A lazy dog"], "model": "all-MiniLM-L6-v2"}))]
pub struct EmbeddingsRequest {
    /// A text, or a list of up to 2048 texts; none may be empty. Texts longer than the model's limit (256 tokens
    /// for all-MiniLM-L6-v2) are truncated.
    pub input: TextInput,
    /// A model installed in the server's models directory (default all-MiniLM-L6-v2).
    #[serde(default)]
    #[schemars(length(min = 1, max = 128))]
    pub model: Option<String>,
    /// `float` (default): arrays of numbers; `base64`: each vector's little-endian f32 bytes, base64-encoded.
    #[serde(default)]
    pub encoding_format: Option<EncodingFormat>,
    /// The vectors' length: if given, it must be the model's (models here are not truncatable).
    #[serde(default)]
    #[schemars(range(min = 1, max = MAX_DIMENSION))]
    pub dimensions: Option<u32>,
    /// Accepted and ignored (OpenAI clients send it).
    #[serde(default)]
    pub user: Option<String>,
}

/// One text or several.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum TextInput {
    One(String),
    Many(#[schemars(length(min = 1, max = MAX_EMBEDDING_INPUTS))] Vec<String>),
}

impl TextInput {
    /// The texts, checked: 1..=2048 of them, none empty.
    pub fn into_texts(self) -> crate::error::Result<Vec<String>> {
        let texts = match self {
            TextInput::One(t) => vec![t],
            TextInput::Many(ts) => ts,
        };
        if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
            return Err(crate::GatewayError::InvalidArgument(format!(
                "input has {} texts: send 1 to {MAX_EMBEDDING_INPUTS}",
                texts.len()
            )));
        }
        if let Some(i) = texts.iter().position(|t| t.trim().is_empty()) {
            return Err(crate::GatewayError::InvalidArgument(format!("input[{i}] is empty: every text needs words")));
        }
        Ok(texts)
    }
}

#[derive(Debug, Clone, Copy, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum EncodingFormat {
    Float,
    Base64,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EmbeddingsResponse {
    /// Always `list`.
    pub object: String,
    pub data: Vec<EmbeddingData>,
    pub model: String,
    pub usage: EmbeddingUsage,
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EmbeddingData {
    /// Always `embedding`.
    pub object: String,
    /// Position of the text in `input`.
    pub index: usize,
    pub embedding: EmbeddingValue,
}

/// Numbers, or base64 of little-endian f32 bytes when `encoding_format` is `base64`.
#[derive(Debug, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum EmbeddingValue {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Debug, Serialize, JsonSchema)]
pub struct EmbeddingUsage {
    /// Tokens of all texts, after truncation.
    pub prompt_tokens: usize,
    pub total_tokens: usize,
}

impl EmbeddingValue {
    /// `v` in `format`.
    pub fn encode(v: Vec<f32>, format: EncodingFormat) -> Self {
        match format {
            EncodingFormat::Float => EmbeddingValue::Float(v),
            EncodingFormat::Base64 => {
                EmbeddingValue::Base64(base64(&v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>()))
            }
        }
    }
}

/// Standard base64 with padding (RFC 4648), as OpenAI's `encoding_format: base64` answers.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [chunk[0], chunk.get(1).copied().unwrap_or(0), chunk.get(2).copied().unwrap_or(0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (k, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if k <= chunk.len() {
                out.push(ALPHABET[(n >> shift) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Every message, for the tests that hold their schemas to what the server accepts and sends.
#[cfg(test)]
pub(crate) fn every_schema() -> Vec<(&'static str, Map<String, Value>)> {
    vec![
        ("CreateStore", input_schema::<CreateStore>()),
        ("CreateStoreArgs", input_schema::<CreateStoreArgs>()),
        ("StoreArgs", input_schema::<StoreArgs>()),
        ("NoArgs", input_schema::<NoArgs>()),
        ("UpsertPoints", input_schema::<UpsertPoints>()),
        ("InsertVectorsArgs", input_schema::<InsertVectorsArgs>()),
        ("InsertVectorArgs", input_schema::<InsertVectorArgs>()),
        ("GetPoints", input_schema::<GetPoints>()),
        ("GetVectorArgs", input_schema::<GetVectorArgs>()),
        ("DeletePoints", input_schema::<DeletePoints>()),
        ("DeletePointsArgs", input_schema::<DeletePointsArgs>()),
        ("UpdateMetadata", input_schema::<UpdateMetadata>()),
        ("UpdateMetadataArgs", input_schema::<UpdateMetadataArgs>()),
        ("CountPoints", input_schema::<CountPoints>()),
        ("CountArgs", input_schema::<CountArgs>()),
        ("ScrollPoints", input_schema::<ScrollPoints>()),
        ("ScrollArgs", input_schema::<ScrollArgs>()),
        ("MetadataUpdated", output_schema::<MetadataUpdated>()),
        ("Counted", output_schema::<Counted>()),
        ("ScrollPage", output_schema::<ScrollPage>()),
        ("IdArgs", input_schema::<IdArgs>()),
        ("SearchRequest", input_schema::<SearchRequest>()),
        ("SearchOptions", input_schema::<SearchOptions>()),
        ("SearchVectorsArgs", input_schema::<SearchVectorsArgs>()),
        ("CreateBackup", input_schema::<CreateBackup>()),
        ("BackupArgs", input_schema::<BackupArgs>()),
        ("RestoreBackup", input_schema::<RestoreBackup>()),
        ("RestoreArgs", input_schema::<RestoreArgs>()),
        ("ListBackupsArgs", input_schema::<ListBackupsArgs>()),
        ("ExportStore", input_schema::<ExportStore>()),
        ("ExportArgs", input_schema::<ExportArgs>()),
        ("ImportStore", input_schema::<ImportStore>()),
        ("ImportArgs", input_schema::<ImportArgs>()),
        ("StoreCreated", output_schema::<StoreCreated>()),
        ("StoreCreatedResult", output_schema::<StoreCreatedResult>()),
        ("StoreList", output_schema::<StoreList>()),
        ("StoreStats", output_schema::<StoreStats>()),
        ("StoreDeleted", output_schema::<StoreDeleted>()),
        ("IndexRebuild", output_schema::<IndexRebuild>()),
        ("StoreSynced", output_schema::<StoreSynced>()),
        ("Upserted", output_schema::<Upserted>()),
        ("VectorInserted", output_schema::<VectorInserted>()),
        ("Points", output_schema::<Points>()),
        ("PointOutput", output_schema::<PointOutput>()),
        ("VectorFound", output_schema::<VectorFound>()),
        ("PointsDeleted", output_schema::<PointsDeleted>()),
        ("VectorDeleted", output_schema::<VectorDeleted>()),
        ("SearchResults", output_schema::<SearchResults>()),
        ("BackupList", output_schema::<BackupList>()),
        ("BackupInfo", output_schema::<BackupInfo>()),
        ("BackupDeleted", output_schema::<BackupDeleted>()),
        ("RestoreInfo", output_schema::<RestoreInfo>()),
        ("ExportInfo", output_schema::<ExportInfo>()),
        ("Imported", output_schema::<Imported>()),
        ("EmbeddingsRequest", input_schema::<EmbeddingsRequest>()),
        ("EmbeddingsResponse", output_schema::<EmbeddingsResponse>()),
        ("InsertTextsArgs", input_schema::<InsertTextsArgs>()),
        ("SearchTextArgs", input_schema::<SearchTextArgs>()),
        ("TextsInserted", output_schema::<TextsInserted>()),
        ("TextResults", output_schema::<TextResults>()),
    ]
}

/// Most points a map samples (REST `POST …/map`): enough to show a store's shape, few enough to draw at once.
pub const MAX_MAP_POINTS: u32 = 20_000;

fn default_map_limit() -> u32 {
    5_000
}

/// A 2-D map of a store (REST `POST /v1/stores/{store}/map`): a uniform random sample of its points, projected
/// onto the sample's two principal components (vectors normalised first for cosine stores).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(example = serde_json::json!({"limit": 5000, "filter": {"must": [{"key": "topic", "match": {"value": "deploys"}}]}}))]
pub struct MapRequest {
    /// Most points to sample (all of them when the store has fewer).
    #[serde(default = "default_map_limit")]
    #[schemars(range(min = 1, max = MAX_MAP_POINTS))]
    pub limit: u32,
    /// Only points whose metadata matches (the same filter as search).
    #[serde(default)]
    #[schemars(with = "Option<Map<String, Value>>")]
    pub filter: Option<Value>,
    /// Return each point's metadata (to colour and label the dots).
    #[serde(default = "yes")]
    pub with_metadata: bool,
    /// Fixes the sample: the same data and seed give the same map.
    #[serde(default)]
    pub seed: u64,
}

impl Default for MapRequest {
    fn default() -> Self {
        Self { limit: default_map_limit(), filter: None, with_metadata: true, seed: 0 }
    }
}

/// The axes of a map, so that a client can place any other vector (a query, a search hit) on it: with `v'` the
/// vector (divided by its length when `normalized`), `x = (v' − mean)·components[0]` and
/// `y = (v' − mean)·components[1]`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MapProjection {
    /// `pca`: the sample's two directions of largest variance.
    pub method: String,
    pub normalized: bool,
    pub mean: Vec<f32>,
    pub components: [Vec<f32>; 2],
    /// The share of the sample's variance each axis shows, in [0, 1].
    pub explained_variance_ratio: [f32; 2],
}

/// One dot of a map.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct MapPoint {
    pub id: String,
    pub x: f32,
    pub y: f32,
    #[serde(skip_serializing_if = "Value::is_null")]
    pub metadata: Value,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct StoreMap {
    pub store: String,
    pub metric: String,
    /// Points matching the filter (every point without one).
    pub total: u64,
    /// Points in the map.
    pub sampled: u64,
    pub projection: MapProjection,
    /// In id order.
    pub points: Vec<MapPoint>,
}

/// A node as the index manager sees it.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClusterNode {
    pub node_id: String,
    /// Its gRPC address.
    pub address: String,
    /// `up`, `down` (missed its heartbeats), `catching_up` (back, taking writes, not yet serving reads).
    pub state: String,
    pub last_heartbeat_unix_ms: u64,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClusterReplica {
    pub node_id: String,
    /// The state of its node.
    pub state: String,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClusterShard {
    pub shard: u32,
    /// The routing-table version at which this shard's writable replicas last changed (writes carry it).
    pub epoch: u64,
    /// First = preferred for reads.
    pub replicas: Vec<ClusterReplica>,
}

#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClusterStore {
    pub name: String,
    pub replication_factor: u32,
    /// Every shard that exists (during a reshard, those of both layouts).
    pub shards: Vec<ClusterShard>,
    /// A reshard in progress (`rvdb reshard`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resharding: Option<ClusterResharding>,
}

/// A reshard in progress: the store's shard count changing from `from_shards` to `to_shards`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClusterResharding {
    pub from_shards: u32,
    pub to_shards: u32,
    /// `copying` (writes go to both layouts, reads by the old one) or `pruning` (the new layout serves; shards
    /// that lost points are cleaned up).
    pub phase: String,
    pub started_unix_ms: u64,
    /// Progress of the copy: (target replica, source shard) pulls done, of all, and the records they copied.
    pub copies_done: u32,
    pub copies_total: u32,
    pub records_copied: u64,
}

/// A shard transfer in progress: a replica moving from one node to another.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClusterTransfer {
    pub store: String,
    pub shard: u32,
    pub from_node_id: String,
    pub to_node_id: String,
    /// `filling`: the new replica takes writes and is being filled from a live replica.
    pub phase: String,
    pub started_unix_ms: u64,
    /// Records the new replica holds so far, and the source holds (refreshed every 250 ms).
    pub records_copied: u64,
    pub records_total: u64,
}

/// The cluster as the index manager publishes it (REST `GET /v1/cluster`): nodes and their states, and where
/// every replica of every store lives. `rvdb serve` is a cluster of one node (`local`).
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ClusterStatus {
    /// The routing table's version (grows with every change of the catalog or of a node's state).
    pub version: u64,
    pub cluster_id: String,
    pub nodes: Vec<ClusterNode>,
    pub stores: Vec<ClusterStore>,
    /// Shard transfers in progress (`rvdb move-shard`).
    pub transfers: Vec<ClusterTransfer>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The limits a schema states are the ones the domain enforces.
    #[test]
    fn schemas_state_the_domain_limits() {
        let create = input_schema::<CreateStoreArgs>();
        let props = &create["properties"];
        assert_eq!(props["dimension"]["maximum"], MAX_DIMENSION);
        assert_eq!(props["shards"]["maximum"], MAX_SHARDS);
        assert_eq!(props["ef_search"]["maximum"], MAX_EF);
        assert_eq!(props["store"]["pattern"], STORE_NAME_PATTERN);
        assert_eq!(create["additionalProperties"], false);
        let required: Vec<&str> =
            create["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(required, ["store"]);
        let search = input_schema::<SearchVectorsArgs>();
        assert_eq!(search["properties"]["k"]["maximum"], MAX_K);
        assert_eq!(search["properties"]["k"]["default"], 10);
        assert_eq!(search["properties"]["with_metadata"]["default"], true);
        assert_eq!(search["properties"]["filter"]["type"], serde_json::json!(["object", "null"]));
        let ids = &input_schema::<GetPoints>()["properties"]["ids"];
        assert_eq!(ids["items"]["maxLength"], MAX_POINT_ID_BYTES);
        // the name patterns are the ones validation applies
        let store = regex::Regex::new(STORE_NAME_PATTERN).ok();
        let long = "x".repeat(65);
        for name in ["docs", "a-b_c9", "", "a b", "é", long.as_str()] {
            let by_schema = store.as_ref().is_some_and(|re| re.is_match(name));
            assert_eq!(by_schema, rvdb_core::types::validate_store_name(name).is_ok(), "{name:?}");
        }
        let file = regex::Regex::new(FILE_NAME_PATTERN).ok();
        for name in ["docs.jsonl", "a-1", ".hidden", "a/b", "", "x..y"] {
            let by_schema = file.as_ref().is_some_and(|re| re.is_match(name));
            assert_eq!(by_schema, crate::backup::validate_file_name("file", name).is_ok(), "{name:?}");
        }
    }

    /// Requests refuse what their schema forbids structurally: unknown fields (also next to a flattened part) and
    /// missing required ones.
    #[test]
    fn requests_refuse_unknown_and_missing_fields() {
        let ok: Result<SearchVectorsArgs, _> =
            serde_json::from_value(serde_json::json!({"store": "s", "vector": [1.0]}));
        assert!(ok.is_ok_and(|a| a.query.options.k == 10 && a.query.options.with_metadata));
        let unknown =
            serde_json::from_value::<SearchVectorsArgs>(serde_json::json!({"store": "s", "vector": [1.0], "kk": 1}));
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field `kk`")));
        let missing = serde_json::from_value::<InsertVectorArgs>(serde_json::json!({"store": "s", "id": "a"}));
        assert!(missing.is_err_and(|e| e.to_string().contains("missing field `vector`")));
        let nested = serde_json::from_value::<InsertVectorsArgs>(
            serde_json::json!({"store": "s", "points": [{"id": "a", "vector": [1.0], "x": 1}]}),
        );
        assert!(nested.is_err_and(|e| e.to_string().contains("unknown field `x`")));
    }

    /// The memory tools' requests: a selector is ids or a filter; set / unset default to nothing; scroll pages
    /// default to 10 points with metadata.
    #[test]
    fn memory_requests_read_as_meant() {
        let by_filter: Result<DeletePointsArgs, _> =
            serde_json::from_value(serde_json::json!({"store": "s", "filter": {"must": []}}));
        assert!(by_filter.is_ok_and(|a| a.which.ids.is_none() && a.which.filter.is_some()));
        let update: Result<UpdateMetadataArgs, _> =
            serde_json::from_value(serde_json::json!({"store": "s", "ids": ["a"], "set": {"k": 1}}));
        assert!(update.is_ok_and(|a| a.update.unset.is_empty() && a.update.set.len() == 1));
        let bad_set = serde_json::from_value::<UpdateMetadataArgs>(serde_json::json!({"store": "s", "set": [1]}));
        assert!(bad_set.is_err_and(|e| e.to_string().starts_with("set: ")));
        let page: Result<ScrollArgs, _> = serde_json::from_value(serde_json::json!({"store": "s"}));
        assert!(page.is_ok_and(|a| a.page.limit == 10 && a.page.with_metadata && !a.page.with_vector));
        let empty = ScrollPoints::default();
        assert!(empty.limit == 10 && empty.with_metadata && empty.cursor.is_none(), "an empty REST body");
        let schema = input_schema::<ScrollArgs>();
        assert_eq!(schema["properties"]["limit"]["maximum"], MAX_K);
        let required: Vec<&str> =
            schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
        assert_eq!(required, ["store"]);
    }

    /// One set of search options for vectors and texts: defaults, unknown fields and error paths survive the
    /// two levels of flattening (`{store, ...{query, with_text, ...SearchOptions}}`).
    #[test]
    fn search_options_are_shared_and_errors_keep_their_paths() {
        let text: Result<SearchTextArgs, _> = serde_json::from_value(serde_json::json!({"store": "s", "query": "q"}));
        assert!(text.is_ok_and(|a| a.query.with_text && a.query.options.k == 10 && a.query.options.with_metadata));
        let off: Result<SearchTextArgs, _> =
            serde_json::from_value(serde_json::json!({"store": "s", "query": "q", "with_text": false, "k": 3}));
        assert!(off.is_ok_and(|a| !a.query.with_text && a.query.options.k == 3));
        let bad_k = serde_json::from_value::<SearchTextArgs>(serde_json::json!({"store": "s", "query": "q", "k": -1}));
        assert!(bad_k.is_err_and(|e| e.to_string().starts_with("k: ")));
        let unknown =
            serde_json::from_value::<SearchTextArgs>(serde_json::json!({"store": "s", "query": "q", "limit": 3}));
        assert!(unknown.is_err_and(|e| e.to_string().contains("unknown field `limit`")));
        let bad_vector =
            serde_json::from_value::<SearchVectorsArgs>(serde_json::json!({"store": "s", "vector": [1.0, "x"]}));
        assert!(bad_vector.is_err_and(|e| e.to_string().starts_with("vector[1]: ")));
        let no_query = serde_json::from_value::<SearchTextArgs>(serde_json::json!({"store": "s"}));
        assert!(no_query.is_err_and(|e| e.to_string().contains("missing field `query`")));
        let schema = input_schema::<SearchTextArgs>();
        for field in ["query", "with_text", "k", "filter", "score_threshold", "with_vector"] {
            assert!(schema["properties"].get(field).is_some(), "{field}");
        }
        assert_eq!(schema["properties"]["with_text"]["default"], true);
    }

    /// MCP and REST serialise hits alike: a distance that overflowed is a number (saturated), never `null`.
    #[test]
    fn distances_stay_finite_numbers() {
        let hit = |distance| SearchHit { id: "a".into(), distance, metadata: None, vector: None };
        let hits = [hit(f32::INFINITY), hit(f32::NEG_INFINITY), hit(f32::NAN), hit(0.25)];
        let json =
            serde_json::to_value(SearchResults { store: "s".into(), results: hits.to_vec() }).unwrap_or_default();
        let distances: Vec<Option<f64>> =
            json["results"].as_array().into_iter().flatten().map(|h| h["distance"].as_f64()).collect();
        assert_eq!(distances, [Some(f32::MAX as f64), Some(f32::MIN as f64), Some(f32::MAX as f64), Some(0.25)]);
        let text = serde_json::to_string(&hits[1]).unwrap_or_default();
        assert!(text.contains(r#""distance":-3.4028235e"#), "{text}");
    }

    #[test]
    fn base64_is_rfc_4648() {
        for (raw, want) in
            [("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE=")]
        {
            assert_eq!(base64(raw.as_bytes()), want);
        }
        let EmbeddingValue::Base64(b) = EmbeddingValue::encode(vec![1.0, -2.5], EncodingFormat::Base64) else {
            panic!("base64 asked")
        };
        assert_eq!(b, "AACAPwAAIMA=");
    }

    #[test]
    fn embedding_inputs_are_checked() {
        assert!(TextInput::One("a".into()).into_texts().is_ok_and(|t| t == ["a"]));
        assert!(TextInput::Many(vec![]).into_texts().is_err());
        assert!(
            TextInput::Many(vec!["a".into(), " ".into()])
                .into_texts()
                .is_err_and(|e| e.to_string().contains("input[1]"))
        );
        assert!(TextInput::Many(vec!["a".into(); MAX_EMBEDDING_INPUTS + 1]).into_texts().is_err());
    }

    /// Every message's schema is valid for utoipa (the OpenAPI document), and says what each field is.
    #[test]
    fn every_schema_reads_as_openapi() {
        for (name, schema) in every_schema() {
            let mut schema = schema;
            schema.remove("$schema");
            let parsed: Result<utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>, _> =
                serde_json::from_value(Value::Object(schema.clone()));
            assert!(parsed.is_ok(), "{name}: {:?}", parsed.err());
            assert_eq!(schema["type"], "object", "{name}");
            assert!(!schema.contains_key("$ref") && !schema.contains_key("$defs"), "{name} is not inlined");
        }
    }
}

openapi_schema!(
    requests: CreateStore, UpsertPoints, GetPoints, DeletePoints, SearchRequest, CreateBackup, RestoreBackup,
        ExportStore, ImportStore, EmbeddingsRequest, InsertTexts, SearchTextRequest, UpdateMetadata, CountPoints,
        ScrollPoints, MapRequest;
    responses: StoreCreated, StoreList, StoreDeleted, IndexRebuild, StoreSynced, Upserted, Points, PointsDeleted,
        SearchResults, BackupList, BackupDeleted, Imported, StoreStats, PointOutput, BackupInfo, RestoreInfo,
        ExportInfo, EmbeddingsResponse, TextsInserted, TextResults, MetadataUpdated, Counted, ScrollPage,
        StoreMap, ClusterStatus,
);
