#!/usr/bin/env python3
"""Relevance of keyword, dense and hybrid search on a query set with known answers, through `rvdb serve`'s REST API.

Corpus: every sentence of the man pages on this machine (bench/corpus.py's rules; ~111,000 with manpages +
manpages-dev), each stored once with `insert_texts` in a store with the local embedding model (all-MiniLM-L6-v2)
and the default text index (no stemming, no stop words). Query set: each page's NAME line description (`ls -
list directory contents` -> "list directory contents"), whose relevant documents are that page's own sentences.
The description is never itself a document (corpus sentences start upper-case and end with a full stop), so no
query finds itself; a sentence found in several pages is relevant to each.

Metrics over the queries with at least one relevant sentence: MRR@10 (1 / rank of the first relevant hit),
nDCG@10 (binary gains, ideal = min(relevant, 10) hits first) and recall@10; for mode keyword, dense, hybrid with
RRF (k 60) and hybrid with DBSF, all with k 10 (hybrid: prefetch 20 each, the default).

    python3 bench/relevance.py --rvdb target/release/rvdb [--queries 2000] [--docs 0 = all] [--seed 5]

The embedding of ~111,000 sentences takes ~6 minutes on 2 cores; the queries ~1 minute per dense-using mode.
"""
import argparse
import glob
import gzip
import http.client
import json
import math
import os
import random
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus import ESCAPES, sentences  # noqa: E402

NAME_SECTION = re.compile(r"^\.SH\s+\"?NAME\"?\s*$(.*?)^\.SH", re.M | re.S)


def name_description(path):
    """The description half of a page's NAME line, or None."""
    try:
        raw = gzip.open(path).read() if path.endswith(".gz") else open(path, "rb").read()
    except OSError:
        return None
    text = raw.decode("utf-8", "replace")
    m = NAME_SECTION.search(text)
    if not m:
        return None
    body = " ".join(l for l in m.group(1).splitlines() if l and l[0] not in ".'")
    body = body.replace("\\-", "-").replace("\\(em", "-").replace("\\(en", "-")
    body = " ".join(ESCAPES.sub("", body).split())
    if " - " not in body:
        return None
    desc = body.split(" - ", 1)[1].strip().rstrip(".")
    return desc if len(desc.split()) >= 2 and "\\" not in desc else None


def corpus_with_pages():
    pages = sorted(p for p in glob.glob("/usr/share/man/man[1-8]/*") if not os.path.basename(p).startswith("gcloud"))
    owners = {}
    queries = []
    for p in pages:
        sents = sentences(p)
        for s in sents:
            owners.setdefault(s, set()).add(p)
        desc = name_description(p) if sents else None
        if desc:
            queries.append((p, desc))
    return owners, queries


class Client:
    def __init__(self, base):
        self.base = base
        self.conn = http.client.HTTPConnection(urllib.parse.urlsplit(base).netloc, timeout=600)

    def call(self, method, path, body):
        self.conn.request(method, path, body=json.dumps(body), headers={"content-type": "application/json"})
        r = self.conn.getresponse()
        data = json.loads(r.read())
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data}")
        return data


def metrics(ranked, relevant, k=10):
    ranked = ranked[:k]
    first = next((i for i, d in enumerate(ranked) if d in relevant), None)
    mrr = 0.0 if first is None else 1.0 / (first + 1)
    dcg = sum(1.0 / math.log2(i + 2) for i, d in enumerate(ranked) if d in relevant)
    idcg = sum(1.0 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    recall = sum(1 for d in ranked if d in relevant) / min(len(relevant), k)
    return mrr, dcg / idcg, recall


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rvdb", required=True)
    ap.add_argument("--queries", type=int, default=2000, help="queries sampled from the pages' NAME lines (0 = all)")
    ap.add_argument("--docs", type=int, default=0, help="documents (0 = the whole corpus)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--batch", type=int, default=256)
    a = ap.parse_args()

    owners, queries = corpus_with_pages()
    docs = sorted(owners)
    random.Random(a.seed).shuffle(docs)
    if a.docs:
        docs = docs[: a.docs]
    ids = {s: f"s{i:06d}" for i, s in enumerate(docs)}
    relevant = {}
    for s in docs:
        for p in owners[s]:
            relevant.setdefault(p, set()).add(ids[s])
    queries = [(p, q) for p, q in queries if p in relevant]
    random.Random(a.seed).shuffle(queries)
    if a.queries:
        queries = queries[: a.queries]

    data = tempfile.mkdtemp(prefix="rvdb-rel-")
    proc = subprocess.Popen([a.rvdb, "serve", "--persistence-dir", data, "--backup-dir", data + "-b", "--grpc-addr",
                             "127.0.0.1:0", "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0"],
                            stdout=subprocess.PIPE, text=True, env=dict(os.environ, RVDB_LOG="warn"))
    try:
        for line in proc.stdout:
            if line.startswith("RVDB_READY"):
                base = dict(kv.split("=", 1) for kv in line.split()[1:])["mcp"].rsplit("/mcp", 1)[0]
                break
        c = Client(base)
        c.call("POST", "/v1/stores", {"name": "man", "embedding": {"provider": "local", "model": "all-MiniLM-L6-v2"},
                                      "index": "hnsw"})
        t = time.perf_counter()
        for s in range(0, len(docs), a.batch):
            chunk = docs[s: s + a.batch]
            c.call("PUT", "/v1/stores/man/texts", {"documents": [{"id": ids[d], "text": d} for d in chunk]})
            if s // a.batch % 40 == 0:
                print(f"  {s + len(chunk)} / {len(docs)} documents, {time.perf_counter() - t:.0f} s", file=sys.stderr)
        load = time.perf_counter() - t
        modes = [("keyword", {"mode": "keyword"}), ("dense", {"mode": "dense"}),
                 ("hybrid (RRF)", {"mode": "hybrid"}), ("hybrid (DBSF)", {"mode": "hybrid", "fusion": "dbsf"})]
        rows = []
        for name, extra in modes:
            sums = [0.0, 0.0, 0.0]
            t = time.perf_counter()
            for page, q in queries:
                r = c.call("POST", "/v1/stores/man/texts/search",
                           dict(query=q, k=10, with_text=False, with_metadata=False, **extra))
                for i, v in enumerate(metrics([h["id"] for h in r["results"]], relevant[page])):
                    sums[i] += v
            secs = time.perf_counter() - t
            n = len(queries)
            rows.append({"mode": name, "mrr@10": round(sums[0] / n, 4), "ndcg@10": round(sums[1] / n, 4),
                         "recall@10": round(sums[2] / n, 4), "queries_per_s": round(n / secs, 1)})
            print(json.dumps(rows[-1]), file=sys.stderr)
        print(json.dumps({"documents": len(docs), "queries": len(queries),
                          "relevant_per_query_median": sorted(len(relevant[p]) for p, _ in queries)[len(queries) // 2],
                          "load_documents_per_s": round(len(docs) / load, 1), "modes": rows}, indent=1))
    finally:
        proc.terminate()
        proc.wait()


if __name__ == "__main__":
    main()
