"""Peer measurements for rvdb's benchmarks, run in the same session as `rvdb bench` (see bench/run.sh).

flat: faiss IndexFlat (L2 / IP / L1), one query per call, one thread: the same work as rvdb's flat search
      (single-query exact top-k). Prints one JSON object per metric, like `rvdb bench flat`.
"""
import argparse, json, os, sys, time

import numpy as np


def recall(found, gt, k):
    hits = 0
    for f, g in zip(found, gt):
        hits += len(np.intersect1d(f[:k], g[:k]))
    return hits / (len(found) * k)


def flat(args):
    import faiss
    faiss.omp_set_num_threads(1)
    base = np.load(os.path.join(args.data, "base.npy"))
    query = np.load(os.path.join(args.data, "query.npy"))[: args.queries]
    d = base.shape[1]
    for metric in args.metrics.split(","):
        t = time.time()
        if metric == "cosine":
            b = base / np.linalg.norm(base, axis=1, keepdims=True)
            idx = faiss.IndexFlatIP(d); idx.add(b.astype(np.float32))
            # rvdb normalises each query inside its search call; so does this loop
            prep = lambda q: (q / np.linalg.norm(q)).astype(np.float32)
        elif metric == "dot":
            idx = faiss.IndexFlatIP(d); idx.add(base); prep = lambda q: q
        elif metric == "l2":
            idx = faiss.IndexFlatL2(d); idx.add(base); prep = lambda q: q
        elif metric == "l1":
            idx = faiss.IndexFlat(d, faiss.METRIC_L1); idx.add(base); prep = lambda q: q
        else:
            raise SystemExit(f"unknown metric {metric}")
        build = time.time() - t
        gt = np.load(os.path.join(args.data, f"gt_{metric}_ids.npy"))
        idx.search(prep(query[0:1]), args.k)  # warm-up
        found = np.empty((len(query), args.k), dtype=np.int64)
        t = time.perf_counter()
        for i in range(len(query)):
            _, I = idx.search(prep(query[i:i + 1]), args.k)
            found[i] = I[0]
        secs = time.perf_counter() - t
        print(json.dumps({"bench": "flat", "engine": f"faiss-{faiss.__version__}", "metric": metric, "n": base.shape[0],
                          "dim": d, "queries": len(query), "k": args.k, "qps": len(query) / secs,
                          "recall": recall(found, gt, args.k), "build_s": build}), flush=True)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flat")
    f.add_argument("--data", required=True)
    f.add_argument("--metrics", default="cosine,l2,l1,dot")
    f.add_argument("--queries", type=int, default=1000)
    f.add_argument("-k", type=int, default=10)
    args = p.parse_args()
    {"flat": flat}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
