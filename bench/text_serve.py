#!/usr/bin/env python3
"""Text in, text out, end to end, as an agent's client sees it: a real `rvdb serve` stores real sentences with
MCP `insert_texts` (the server embeds them) and answers MCP `search_text` / REST `POST …/texts/search` queries
made of each sentence's own words (every fourth word dropped), from one client on one keep-alive loopback
connection. Reports documents/s, search p50 / p99, and top-3 hit rate (the sentence a query was made from).

With `--peer chroma` the same texts go through Chroma (PyPI `chromadb`, in process) with a sentence-transformers
embedding function over the same local model files (what chroma-mcp users run, minus the model download):
`collection.add` docs/s and `collection.query` p50 / p99, in the same run.

    python3 bench/corpus.py --count 10000 > /tmp/sentences.txt
    python3 bench/text_serve.py --bin target/release/rvdb --texts /tmp/sentences.txt [--queries 2000]
    <venv with chromadb + sentence-transformers>/bin/python bench/text_serve.py --peer chroma --texts /tmp/sentences.txt
"""
import argparse
import json
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from serve_latency import Conn, mcp, pct, start  # noqa: E402

MODEL_DIR = os.path.join(os.environ.get("RVDB_MODEL_DIR") or os.path.expanduser("~/.cache/rvdb/models"), "all-MiniLM-L6-v2")


def own_words(s):
    words = s.split()
    return s if len(words) < 8 else " ".join(w for i, w in enumerate(words) if i % 4 != 3)


def summary(name, docs, insert_s, lat, hits, extra=None):
    us = lambda p: round(pct(lat, p) * 1e6)
    return {"engine": name, "documents": docs, "insert_docs_per_s": round(docs / insert_s, 1),
            "search_us": {"p50": us(0.5), "p99": us(0.99)}, "queries": len(lat),
            "top3_hit_rate": round(hits / len(lat), 4), **(extra or {})}


def run_rvdb(a, texts, queries):
    data = tempfile.mkdtemp(prefix="rvdb-text-serve-")
    proc, url = start(a.bin, data)
    try:
        conn = Conn(url)
        mcp(conn, 0, "create_store", {"store": "t", "embedding": {}, "index": a.index})
        t = time.perf_counter()
        for n, s in enumerate(range(0, len(texts), a.batch)):
            docs = [{"text": x, "id": f"s{s + i}"} for i, x in enumerate(texts[s:s + a.batch])]
            mcp(conn, n + 1, "insert_texts", {"store": "t", "documents": docs})
        insert_s = time.perf_counter() - t
        out = {}
        for surface in ("mcp", "rest"):
            lat, hits = [], 0
            for j, (i, q) in enumerate(queries):
                t = time.perf_counter()
                if surface == "mcp":
                    raw = mcp(conn, 100_000 + j, "search_text", {"store": "t", "query": q, "k": 3, "with_text": False})
                    body = json.loads(raw[raw.index(b"{"):])  # one SSE `data:` event, or plain JSON
                    found = body["result"]["structuredContent"]["results"]
                else:
                    found = json.loads(conn.call("POST", "/v1/stores/t/texts/search", {"query": q, "k": 3, "with_text": False}))["results"]
                lat.append(time.perf_counter() - t)
                hits += f"s{i}" in [h["id"] for h in found]
            out[surface] = (lat, hits)
        return [summary("rvdb MCP", len(texts), insert_s, *out["mcp"]),
                summary("rvdb REST", len(texts), insert_s, *out["rest"])]
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


def run_chroma(a, texts, queries):
    import chromadb
    from chromadb.utils import embedding_functions
    ef = embedding_functions.SentenceTransformerEmbeddingFunction(model_name=MODEL_DIR, device="cpu")
    data = tempfile.mkdtemp(prefix="chroma-text-serve-")
    try:
        client = chromadb.PersistentClient(path=data)
        col = client.create_collection("texts", embedding_function=ef, metadata={"hnsw:space": "cosine"})
        t = time.perf_counter()
        for s in range(0, len(texts), a.batch):
            chunk = texts[s:s + a.batch]
            col.add(ids=[f"s{s + i}" for i in range(len(chunk))], documents=chunk)
        insert_s = time.perf_counter() - t
        lat, hits = [], 0
        for i, q in queries:
            t = time.perf_counter()
            r = col.query(query_texts=[q], n_results=3)
            lat.append(time.perf_counter() - t)
            hits += f"s{i}" in r["ids"][0]
        import chromadb as c
        return [summary("chroma (in process) + sentence-transformers", len(texts), insert_s, lat, hits,
                        {"chromadb": c.__version__})]
    finally:
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin")
    ap.add_argument("--peer", choices=["chroma"])
    ap.add_argument("--texts", required=True)
    ap.add_argument("--count", type=int, default=10000)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=64, help="documents per insert call")
    ap.add_argument("--index", default="hnsw")
    a = ap.parse_args()
    with open(a.texts) as f:
        texts = [l.strip() for l in f if l.strip()][:a.count]
    step = max(1, len(texts) // a.queries)
    queries = [(i, own_words(texts[i])) for i in range(0, len(texts), step)][:a.queries]
    rows = run_chroma(a, texts, queries) if a.peer == "chroma" else run_rvdb(a, texts, queries)
    for r in rows:
        print(json.dumps({"bench": "text_serve", "threads": os.environ.get("RAYON_NUM_THREADS", "all"), **r}))


if __name__ == "__main__":
    main()
