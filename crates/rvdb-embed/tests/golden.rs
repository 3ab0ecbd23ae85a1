//! rvdb's in-process all-MiniLM-L6-v2 against sentence-transformers' own vectors for the same texts
//! (`tests/embeddings/golden.json`, made by `tests/embeddings/make_golden.py`): cosine >= 0.999 for every text,
//! one at a time and in one batch (padding must not change a vector), and unit length.

use rvdb_embed::{DEFAULT_MODEL, Embedder, LocalEmbedder, default_models_dir};

#[derive(serde::Deserialize)]
struct Golden {
    model: String,
    texts: Vec<String>,
    vectors: Vec<Vec<f32>>,
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb)
}

#[test]
fn local_embeddings_match_sentence_transformers() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/embeddings/golden.json");
    let golden: Golden = serde_json::from_slice(&std::fs::read(path).expect("golden.json")).expect("golden.json");
    assert_eq!(golden.model, DEFAULT_MODEL);
    assert!(golden.texts.len() >= 50 && golden.texts.len() == golden.vectors.len());
    let dir = default_models_dir().join(DEFAULT_MODEL);
    let model = LocalEmbedder::load(&dir).unwrap_or_else(|e| {
        panic!("{e}: install the model with deploy/setup.sh (the test command does), or set RVDB_MODEL_DIR")
    });
    assert_eq!(model.info().dimension, 384);
    assert!(model.info().normalized);
    let texts: Vec<&str> = golden.texts.iter().map(String::as_str).collect();
    let batch = model.embed(&texts).expect("embed");
    let mut worst = 1.0f64;
    for (i, (text, want)) in texts.iter().zip(&golden.vectors).enumerate() {
        let alone = model.embed(&[text]).expect("embed").remove(0);
        for got in [&alone, &batch[i]] {
            assert_eq!(got.len(), 384);
            let c = cosine(got, want);
            worst = worst.min(c);
            assert!(c >= 0.999, "text {i} {text:?}: cosine {c}");
            let norm: f64 = got.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
            assert!((norm - 1.0).abs() < 1e-4, "text {i}: norm {norm}");
        }
    }
    eprintln!("{} texts, worst cosine to sentence-transformers {worst:.7}", texts.len());
}
