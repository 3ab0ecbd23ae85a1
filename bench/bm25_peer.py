#!/usr/bin/env python3
"""Keyword (BM25) search: rvdb against bm25s and tantivy, in one run, on one machine, on a real corpus.

Corpus: every sentence of the man pages on this machine (bench/corpus.py; ~111,000 with manpages + manpages-dev).
Queries: 10,000, each 2-4 words drawn from a random sentence (seeded). Every engine gets the same token lists: the
ones rvdb's analyzer makes (`rvdb bench keyword` writes them), so that differences are in scoring alone.

- rvdb core: `rvdb bench keyword` (the shard's TextIndex in process, one thread; query analysis included).
- rvdb REST: `rvdb serve`, a store without an embedding model, documents written as points with `_text`, one
  query per `POST /v1/stores/{store}/texts/search` (mode keyword), from this one Python client.
- bm25s (method lucene, k1 1.2, b 0.75): `retrieve` per query, one thread.
- tantivy (PyPI bindings): a text field with the whitespace tokenizer over the same tokens, one query per
  `searcher.search` (a boolean query of SHOULD term queries), one thread.

Agreement: the share of queries whose top-10 ids equal bm25s's, ignoring order within ties (equal scores to 1e-4
relative), and the same for tantivy (whose BM25 is Lucene's with the (k1 + 1) factor: the same ranking).

    python3 bench/bm25_peer.py --rvdb target/release/rvdb [--docs 110000] [--queries 10000]
"""
import argparse
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent


def corpus(n):
    out = subprocess.run([sys.executable, str(HERE / "corpus.py"), "--count", str(n), "--seed", "1"],
                         capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l.strip()]


def make_queries(docs, n, seed=7):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        words = [w.strip(".,;:()[]\"'") for w in rng.choice(docs).split()]
        words = [w for w in words if len(w) > 2]
        if len(words) < 2:
            continue
        out.append(" ".join(rng.sample(words, min(len(words), rng.randint(2, 4)))))
    return out


def load_jsonl(p):
    with open(p) as f:
        return [json.loads(l) for l in f]


def same_top(a, b, tol=1e-4):
    """Top lists of (id, score) equal up to the order of ties (and a tie at the cut)."""
    if len(a) != len(b):
        return False
    if [x[0] for x in a] == [x[0] for x in b]:
        return True
    cut = min(a[-1][1], b[-1][1]) if a else 0
    sa = {i for i, s in a if s > cut * (1 + tol)}
    sb = {i for i, s in b if s > cut * (1 + tol)}
    return sa == sb and all(abs(x[1] - y[1]) <= tol * max(1.0, abs(x[1])) for x, y in zip(a, b))


def run_bm25s(doc_tokens, query_tokens, k):
    import bm25s
    import numpy as np
    t = time.perf_counter()
    r = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    r.index(doc_tokens, show_progress=False)
    build = time.perf_counter() - t
    results = []
    t = time.perf_counter()
    for q in query_tokens:
        q = [x for x in q if x in r.vocab_dict]
        if not q:
            results.append([])
            continue
        scores = r.get_scores(q)
        top = np.argpartition(-scores, k)[:k] if len(scores) > k else np.arange(len(scores))
        top = sorted(top, key=lambda i: (-scores[i], i))
        results.append([(f"d{i:06d}", float(scores[i])) for i in top if scores[i] > 0])
    return build, time.perf_counter() - t, results


def run_tantivy(doc_tokens, query_tokens, k):
    import tantivy
    sb = tantivy.SchemaBuilder()
    sb.add_text_field("body", stored=False, tokenizer_name="whitespace")
    sb.add_integer_field("n", stored=True, fast=True)
    schema = sb.build()
    d = tempfile.mkdtemp(prefix="tantivy-")
    index = tantivy.Index(schema, path=d)
    t = time.perf_counter()
    w = index.writer(heap_size=512_000_000, num_threads=1)
    for i, toks in enumerate(doc_tokens):
        w.add_document(tantivy.Document(body=" ".join(toks), n=i))
    w.commit()
    w.wait_merging_threads()
    build = time.perf_counter() - t
    index.reload()
    searcher = index.searcher()
    results = []
    t = time.perf_counter()
    for q in query_tokens:
        if not q:
            results.append([])
            continue
        query = tantivy.Query.boolean_query(
            [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "body", x)) for x in q])
        hits = searcher.search(query, k).hits
        results.append([(score, addr) for score, addr in hits])
    secs = time.perf_counter() - t
    named = [[(f"d{searcher.doc(a)['n'][0]:06d}", s) for s, a in r] for r in results]
    return build, secs, named


def post(url, body, conn=None):
    """POST JSON; with `conn`, on that one keep-alive connection (as a real client pools them)."""
    if conn is not None:
        conn.request("POST", urllib.parse.urlsplit(url).path, body=json.dumps(body),
                     headers={"content-type": "application/json"})
        return json.loads(conn.getresponse().read())
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


def run_rest(rvdb, docs, queries, k):
    data = tempfile.mkdtemp(prefix="rvdb-kw-")
    p = subprocess.Popen([rvdb, "serve", "--persistence-dir", data, "--backup-dir", data + "-b", "--grpc-addr",
                          "127.0.0.1:0", "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0"],
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ, RVDB_LOG="warn"))
    try:
        for line in p.stdout:
            if line.startswith("RVDB_READY"):
                mcp = dict(kv.split("=", 1) for kv in line.split()[1:])["mcp"]
                break
        base = mcp.rsplit("/mcp", 1)[0]
        post(f"{base}/v1/stores", {"name": "kw", "dimension": 1})
        t = time.perf_counter()
        for s in range(0, len(docs), 2000):
            pts = [{"id": f"d{i:06d}", "vector": [1.0], "metadata": {"_text": docs[i]}}
                   for i in range(s, min(len(docs), s + 2000))]
            req = urllib.request.Request(f"{base}/v1/stores/kw/points", data=json.dumps({"points": pts}).encode(),
                                         headers={"content-type": "application/json"}, method="PUT")
            urllib.request.urlopen(req).read()
        build = time.perf_counter() - t
        url = f"{base}/v1/stores/kw/texts/search"
        conn = http.client.HTTPConnection(urllib.parse.urlsplit(base).netloc)
        for q in queries[:200]:
            post(url, {"query": q, "k": k, "mode": "keyword", "with_text": False, "with_metadata": False}, conn)
        results = []
        t = time.perf_counter()
        for q in queries:
            r = post(url, {"query": q, "k": k, "mode": "keyword", "with_text": False, "with_metadata": False}, conn)
            results.append([(h["id"], h["bm25"]) for h in r["results"]])
        return build, time.perf_counter() - t, results
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rvdb", required=True)
    ap.add_argument("--docs", type=int, default=110_000)
    ap.add_argument("--queries", type=int, default=10_000)
    ap.add_argument("-k", type=int, default=10)
    ap.add_argument("--skip-rest", action="store_true")
    a = ap.parse_args()
    docs = corpus(a.docs)
    queries = make_queries(docs, a.queries)
    work = Path(tempfile.mkdtemp(prefix="kwbench-"))
    (work / "docs.txt").write_text("\n".join(docs) + "\n")
    (work / "queries.txt").write_text("\n".join(queries) + "\n")
    out = subprocess.run([a.rvdb, "bench", "keyword", "--texts", str(work / "docs.txt"), "--queries",
                          str(work / "queries.txt"), "-k", str(a.k), "--out", str(work)],
                         capture_output=True, text=True, check=True).stdout
    core = json.loads(out.strip().splitlines()[-1])
    doc_tokens = load_jsonl(work / "tokens.jsonl")
    query_tokens = load_jsonl(work / "query_tokens.jsonl")
    rvdb_results = [[(i, s) for i, s in r] for r in load_jsonl(work / "results.jsonl")]
    rows = [{"engine": core["engine"], "build_docs_per_s": core["documents_per_s"], "qps": core["qps"]}]

    b_build, b_secs, b_results = run_bm25s(doc_tokens, query_tokens, a.k)
    rows.append({"engine": "bm25s (lucene)", "build_docs_per_s": round(len(docs) / b_build),
                 "qps": round(len(queries) / b_secs)})
    t_build, t_secs, t_results = run_tantivy(doc_tokens, query_tokens, a.k)
    rows.append({"engine": "tantivy (py bindings)", "build_docs_per_s": round(len(docs) / t_build),
                 "qps": round(len(queries) / t_secs)})
    agree_bm25s = sum(same_top(r, b) for r, b in zip(rvdb_results, b_results)) / len(queries)
    agree_ids_tantivy = sum([x[0] for x in r] == [x[0] for x in t] or
                            {x[0] for x in r} == {x[0] for x in t} for r, t in zip(rvdb_results, t_results)) / len(queries)
    if not a.skip_rest:
        r_build, r_secs, r_results = run_rest(a.rvdb, docs, queries, a.k)
        rows.append({"engine": "rvdb REST (rvdb serve, 1 client)", "build_docs_per_s": round(len(docs) / r_build),
                     "qps": round(len(queries) / r_secs)})
        same = sum(same_top(r, c) for r, c in zip(r_results, rvdb_results)) / len(queries)
        rows[-1]["same_top10_as_core"] = round(same, 4)
    print(json.dumps({"documents": len(docs), "queries": len(queries), "k": a.k,
                      "top10_equal_to_bm25s": round(agree_bm25s, 4),
                      "top10_ids_equal_to_tantivy": round(agree_ids_tantivy, 4), "engines": rows}, indent=1))


if __name__ == "__main__":
    main()
