//! Store and point types with their validation. Validation lives here, once, so the node, the gateway and the
//! REST layer refuse the same inputs with the same words.

use serde::{Deserialize, Serialize};

use crate::error::excerpt;
use crate::{CoreError, Metric};

pub const MAX_STORE_NAME_LEN: usize = 64;
pub const MAX_POINT_ID_BYTES: usize = 512;
pub const MAX_DIMENSION: u32 = 65_536;
pub const MAX_K: u32 = 10_000;
/// Largest metadata document, counted on its stored (canonical, compact) form: what backups, exports and
/// catch-up carry must be what was accepted (`1e9` is stored as `1000000000.0`, so counting the bytes as sent
/// would accept documents that could not be restored).
pub const MAX_METADATA_BYTES: usize = 256 * 1024;
/// Deepest nesting of objects and arrays in metadata (the root object is level 1). JSON readers limit nesting
/// (serde_json at 128, with an export line adding a level), so anything accepted must stay well inside that.
pub const MAX_METADATA_DEPTH: usize = 32;
pub const MAX_SHARDS: u32 = 1024;
/// Largest HNSW beam width (`ef_construction`, `ef_search`, a search's `ef`): beyond it a beam allocates more
/// than a search could use, and an absurd value would try to allocate gigabytes.
pub const MAX_EF: u32 = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum IndexKind {
    #[default]
    Flat,
    Hnsw,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Quantization {
    #[default]
    None,
    Sq8,
}

impl IndexKind {
    pub fn as_str(self) -> &'static str {
        match self {
            IndexKind::Flat => "flat",
            IndexKind::Hnsw => "hnsw",
        }
    }
}

impl std::str::FromStr for IndexKind {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s.to_ascii_lowercase().as_str() {
            "flat" => Ok(IndexKind::Flat),
            "hnsw" => Ok(IndexKind::Hnsw),
            _ => Err(CoreError::InvalidConfig(format!("index {:?}: use flat or hnsw", excerpt(s)))),
        }
    }
}

impl Quantization {
    pub fn as_str(self) -> &'static str {
        match self {
            Quantization::None => "none",
            Quantization::Sq8 => "sq8",
        }
    }
}

impl std::str::FromStr for Quantization {
    type Err = CoreError;
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s.to_ascii_lowercase().as_str() {
            "none" => Ok(Quantization::None),
            "sq8" => Ok(Quantization::Sq8),
            _ => Err(CoreError::InvalidConfig(format!("quantization {:?}: use none or sq8", excerpt(s)))),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HnswParams {
    pub m: u32,
    pub ef_construction: u32,
    pub ef_search: u32,
}

impl Default for HnswParams {
    fn default() -> Self {
        Self { m: 16, ef_construction: 200, ef_search: 64 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexSpec {
    pub kind: IndexKind,
    #[serde(default)]
    pub hnsw: HnswParams,
    #[serde(default)]
    pub quantization: Quantization,
}

/// A store's configuration: what the index manager keeps in its catalog and every shard replica keeps beside
/// its data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreConfig {
    pub name: String,
    pub dimension: u32,
    pub metric: Metric,
    #[serde(default)]
    pub index: IndexSpec,
    #[serde(default = "one")]
    pub shards: u32,
    #[serde(default = "one")]
    pub replication_factor: u32,
    /// Acks a write needs; 0 = a majority of the replicas.
    #[serde(default)]
    pub write_consistency: u32,
    /// The model that turns this store's texts into vectors, if it takes text: fixed at creation, so a query is
    /// always embedded by the model that embedded the data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding: Option<EmbeddingSpec>,
    /// How the store's texts are analysed and scored for keyword search (fixed at creation).
    #[serde(default, skip_serializing_if = "crate::text::TextIndexSpec::is_default")]
    pub text_index: crate::text::TextIndexSpec,
}

/// Providers a store's [`EmbeddingSpec`] may name.
pub const EMBEDDING_PROVIDERS: &[&str] = &["local", "openai"];

/// A store's embedding model, as recorded in its config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmbeddingSpec {
    /// `local` (in process, from local model files) or `openai` (an OpenAI-compatible `/v1/embeddings`).
    pub provider: String,
    /// The model's name, e.g. `all-MiniLM-L6-v2`.
    pub model: String,
    /// Length of its vectors: the store's dimension.
    pub dimension: u32,
    /// Its vectors have length 1.
    #[serde(default)]
    pub normalized: bool,
}

fn one() -> u32 {
    1
}

impl StoreConfig {
    pub fn new(name: impl Into<String>, dimension: u32, metric: Metric) -> Self {
        Self {
            name: name.into(),
            dimension,
            metric,
            index: IndexSpec::default(),
            shards: 1,
            replication_factor: 1,
            write_consistency: 0,
            embedding: None,
            text_index: Default::default(),
        }
    }

    /// Checks every field; zero shard / replica counts must have been defaulted to 1 before.
    pub fn validate(&self) -> Result<(), CoreError> {
        validate_store_name(&self.name)?;
        if self.dimension == 0 || self.dimension > MAX_DIMENSION {
            return Err(CoreError::InvalidDimension(self.dimension));
        }
        if self.shards == 0 || self.shards > MAX_SHARDS {
            return Err(CoreError::InvalidConfig(format!(
                "shards is {}: must be between 1 and {MAX_SHARDS}",
                self.shards
            )));
        }
        if self.replication_factor == 0 || self.replication_factor > 16 {
            return Err(CoreError::InvalidConfig(format!(
                "replication_factor is {}: must be between 1 and 16",
                self.replication_factor
            )));
        }
        if self.write_consistency > self.replication_factor {
            return Err(CoreError::InvalidConfig(format!(
                "write_consistency is {} but replication_factor is only {}",
                self.write_consistency, self.replication_factor
            )));
        }
        let h = self.index.hnsw;
        if self.index.kind == IndexKind::Hnsw
            && (h.m < 2
                || h.m > 128
                || h.ef_construction == 0
                || h.ef_search == 0
                || h.ef_construction > MAX_EF
                || h.ef_search > MAX_EF)
        {
            return Err(CoreError::InvalidConfig(format!(
                "hnsw parameters m={}, ef_construction={}, ef_search={}: m must be 2..=128 and the efs 1..=100000",
                h.m, h.ef_construction, h.ef_search
            )));
        }
        if let Some(e) = &self.embedding {
            if !EMBEDDING_PROVIDERS.contains(&e.provider.as_str()) {
                return Err(CoreError::InvalidConfig(format!(
                    "embedding provider {:?} is unknown: use one of {}",
                    excerpt(&e.provider),
                    EMBEDDING_PROVIDERS.join(", ")
                )));
            }
            if e.model.is_empty() || e.model.len() > 256 || e.model.chars().any(char::is_control) {
                return Err(CoreError::InvalidConfig("embedding model must be 1-256 characters".into()));
            }
            if e.dimension != self.dimension {
                return Err(CoreError::InvalidConfig(format!(
                    "embedding model '{}' makes {}-d vectors but the store's dimension is {}",
                    excerpt(&e.model),
                    e.dimension,
                    self.dimension
                )));
            }
        }
        self.text_index.validate()
    }
}

/// `[A-Za-z0-9_-]{1,64}`: safe as a file name, a column-family name and a URL path segment.
pub fn validate_store_name(name: &str) -> Result<(), CoreError> {
    let err = |reason| Err(CoreError::InvalidStoreName { name: excerpt(name).into_owned(), reason });
    if name.is_empty() {
        return err("it is empty");
    }
    if name.len() > MAX_STORE_NAME_LEN {
        return err("it is longer than 64 characters");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') {
        return err("only letters, digits, '_' and '-' are allowed");
    }
    Ok(())
}

/// 1..=512 bytes of UTF-8 without control characters.
pub fn validate_point_id(id: &str) -> Result<(), CoreError> {
    let err = |reason| Err(CoreError::InvalidPointId { id: excerpt(id).into_owned(), reason });
    if id.is_empty() {
        return err("it is empty");
    }
    if id.len() > MAX_POINT_ID_BYTES {
        return err("it is longer than 512 bytes");
    }
    if id.chars().any(char::is_control) {
        return err("it contains control characters");
    }
    Ok(())
}

/// Checks a stored or query vector: right length, finite components, and non-zero for cosine.
pub fn validate_vector(vector: &[f32], dimension: u32, metric: Metric) -> Result<(), CoreError> {
    if vector.len() != dimension as usize {
        return Err(CoreError::DimensionMismatch { expected: dimension as usize, got: vector.len() });
    }
    if let Some((index, value)) = vector.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(CoreError::NonFinite { index, value: *value });
    }
    if metric == Metric::Cosine && vector.iter().all(|x| *x == 0.0) {
        return Err(CoreError::ZeroVector);
    }
    Ok(())
}

pub fn validate_k(k: u32) -> Result<(), CoreError> {
    if k == 0 || k > MAX_K {
        return Err(CoreError::InvalidK(k));
    }
    Ok(())
}

/// Parses metadata sent as JSON text: empty means `{}`; anything but an object, nested deeper than
/// [`MAX_METADATA_DEPTH`], or more than [`MAX_METADATA_BYTES`] once stored, is refused. Returns the canonical
/// (compact) serialisation that is stored.
pub fn canonical_metadata(json: &str) -> Result<String, CoreError> {
    parse_metadata(json).map(|(_, canonical)| canonical)
}

/// Parses and checks point metadata (see [`canonical_metadata`]); returns the document and its canonical text.
pub fn parse_metadata(json: &str) -> Result<(serde_json::Value, String), CoreError> {
    if json.trim().is_empty() {
        return Ok((serde_json::Value::Object(Default::default()), "{}".to_string()));
    }
    // The text as sent may be larger than its canonical form (whitespace), but not without bound.
    if json.len() > 4 * MAX_METADATA_BYTES {
        return Err(too_large(json.len()));
    }
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| CoreError::InvalidMetadata(format!("not valid JSON: {e}")))?;
    let canonical = check_metadata(&value)?;
    Ok((value, canonical))
}

/// Lowercase hexadecimal of `bytes` (digests, cursors).
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// The bytes of a hexadecimal text ([`hex`]'s inverse; either case); `None` if it is not hex.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes = text.as_bytes();
    if !bytes.len().is_multiple_of(2) {
        return None;
    }
    bytes.chunks(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

/// Checks a metadata document (a JSON object within [`MAX_METADATA_DEPTH`] and [`MAX_METADATA_BYTES`]) and
/// returns its canonical text: what [`parse_metadata`] checks after parsing, for a document built in memory (a
/// stored document with an update applied).
pub fn check_metadata(value: &serde_json::Value) -> Result<String, CoreError> {
    if !value.is_object() {
        return Err(CoreError::InvalidMetadata(format!("must be a JSON object, got {}", json_kind(value))));
    }
    let depth = json_depth(value);
    if depth > MAX_METADATA_DEPTH {
        return Err(CoreError::InvalidMetadata(format!(
            "nested {depth} levels deep, more than the limit of {MAX_METADATA_DEPTH}"
        )));
    }
    let canonical = value.to_string();
    if canonical.len() > MAX_METADATA_BYTES {
        return Err(too_large(canonical.len()));
    }
    Ok(canonical)
}

fn too_large(bytes: usize) -> CoreError {
    CoreError::InvalidMetadata(format!(
        "{bytes} bytes (as stored, compact JSON) is more than the limit of {MAX_METADATA_BYTES}"
    ))
}

/// Nesting depth of objects and arrays (a scalar is 0, `{}` is 1). Recursion is bounded by the parser's own
/// nesting limit (128).
fn json_depth(v: &serde_json::Value) -> usize {
    match v {
        serde_json::Value::Array(items) => 1 + items.iter().map(json_depth).max().unwrap_or(0),
        serde_json::Value::Object(m) => 1 + m.values().map(json_depth).max().unwrap_or(0),
        _ => 0,
    }
}

fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Stored metadata is the canonical text of what was sent; reading it back gives the same numbers (see
    /// `jsonl::tests::metadata_numbers_survive_export_and_import_exactly` for the parser bug this guards).
    #[test]
    fn canonical_metadata_reads_back_to_the_same_numbers() {
        let sent = r#"{"a": 7.777777777777778e+121, "b": [0.1, 1e-320, -0.0, 123456789.12345679], "c": {"d": 2.5e-8}}"#;
        let (value, canonical) = parse_metadata(sent).unwrap();
        let stored: serde_json::Value = serde_json::from_str(&canonical).unwrap();
        assert_eq!(stored, value, "{canonical}");
        assert_eq!(canonical_metadata(&canonical).unwrap(), canonical, "canonical text is a fixed point");
    }

    #[test]
    fn hex_round_trips() {
        assert_eq!(hex(&[0x00, 0x0f, 0xa5, 0xff]), "000fa5ff");
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(unhex(&hex(&all)), Some(all));
        assert_eq!(unhex("0A"), Some(vec![10]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex("é"), None);
        assert_eq!(unhex(""), Some(vec![]));
    }

    #[test]
    fn store_names() {
        assert!(validate_store_name("my_store-1").is_ok());
        assert!(validate_store_name("").is_err());
        assert!(validate_store_name("a/b").is_err());
        assert!(validate_store_name("é").is_err());
        assert!(validate_store_name(&"a".repeat(65)).is_err());
        assert!(validate_store_name(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn point_ids() {
        assert!(validate_point_id("doc-1").is_ok());
        assert!(validate_point_id("日本").is_ok());
        assert!(matches!(validate_point_id(""), Err(CoreError::InvalidPointId { reason: "it is empty", .. })));
        assert!(validate_point_id("a\nb").is_err());
        assert!(validate_point_id(&"x".repeat(513)).is_err());
    }

    #[test]
    fn vectors() {
        assert!(validate_vector(&[1.0, 2.0], 2, Metric::Cosine).is_ok());
        assert_eq!(validate_vector(&[1.0], 2, Metric::Dot), Err(CoreError::DimensionMismatch { expected: 2, got: 1 }));
        assert!(matches!(
            validate_vector(&[1.0, f32::NAN], 2, Metric::Dot),
            Err(CoreError::NonFinite { index: 1, .. })
        ));
        assert!(validate_vector(&[f32::INFINITY, 0.0], 2, Metric::Dot).is_err());
        assert_eq!(validate_vector(&[0.0, 0.0], 2, Metric::Cosine), Err(CoreError::ZeroVector));
        assert!(validate_vector(&[0.0, 0.0], 2, Metric::Euclidean).is_ok());
    }

    #[test]
    fn metadata() {
        assert_eq!(canonical_metadata("").unwrap(), "{}");
        assert_eq!(canonical_metadata(r#"{ "a" : 1 }"#).unwrap(), r#"{"a":1}"#);
        assert!(canonical_metadata("[1]").is_err());
        assert!(canonical_metadata("{").is_err());
    }

    /// Issue #15 (10): the limits hold on what is stored, so whatever is accepted can be backed up, restored,
    /// exported and imported.
    #[test]
    fn metadata_limits_apply_to_the_stored_form() {
        // 100 KB as sent, 325 KB as stored: refused.
        let inflating = format!("{{\"a\": [{}]}}", vec!["1e9"; 25_000].join(","));
        assert!(inflating.len() < MAX_METADATA_BYTES);
        let e = canonical_metadata(&inflating).unwrap_err().to_string();
        assert!(e.contains("as stored") && e.contains("262144"), "{e}");
        // Whitespace that the stored form drops does not count.
        let padded = format!("{{\"a\": \"x\"{}}}", " ".repeat(MAX_METADATA_BYTES));
        assert_eq!(canonical_metadata(&padded).unwrap(), r#"{"a":"x"}"#);
        // Nesting: 32 levels are accepted and survive a JSON round trip inside another object; 33 are not.
        let nested = |levels: usize| "{\"a\":".repeat(levels - 1) + "{}" + &"}".repeat(levels - 1);
        let ok = canonical_metadata(&nested(MAX_METADATA_DEPTH)).unwrap();
        let line = format!("{{\"id\":\"p\",\"metadata\":{ok}}}");
        assert!(serde_json::from_str::<serde_json::Value>(&line).is_ok());
        let e = canonical_metadata(&nested(MAX_METADATA_DEPTH + 1)).unwrap_err().to_string();
        assert!(e.contains("33 levels deep"), "{e}");
        let e = canonical_metadata(&("[".repeat(127) + &"]".repeat(127))).unwrap_err().to_string();
        assert!(e.contains("must be a JSON object"), "{e}");
        let deep_array = format!("{{\"a\":{}{}}}", "[".repeat(120), "]".repeat(120));
        assert!(canonical_metadata(&deep_array).unwrap_err().to_string().contains("levels deep"));
    }

    /// Issue #15 (17): a component beyond the f32 range (1e39 parses as infinity) is reported as out of range.
    #[test]
    fn out_of_range_components_are_named_as_such() {
        let big: f32 = "1e39".parse().unwrap();
        let e = validate_vector(&[big, 0.0], 2, Metric::Dot).unwrap_err().to_string();
        assert!(e.contains("vector[0] is outside the range of a 32-bit float"), "{e}");
        let e = validate_vector(&[0.0, f32::NAN], 2, Metric::Dot).unwrap_err().to_string();
        assert!(e.contains("vector[1] is NaN"), "{e}");
    }

    #[test]
    fn configs() {
        let mut c = StoreConfig::new("s", 3, Metric::Cosine);
        assert!(c.validate().is_ok());
        c.dimension = 0;
        assert_eq!(c.validate(), Err(CoreError::InvalidDimension(0)));
        c.dimension = 3;
        c.write_consistency = 2;
        assert!(c.validate().is_err());
        let json = serde_json::to_string(&StoreConfig::new("s", 3, Metric::Dot)).unwrap();
        let back: StoreConfig = serde_json::from_str(&json).unwrap();
        assert_eq!(back.metric, Metric::Dot);
    }
}
