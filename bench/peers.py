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
        t, cpu = time.perf_counter(), time.thread_time()
        for i in range(len(query)):
            _, I = idx.search(prep(query[i:i + 1]), args.k)
            found[i] = I[0]
        secs, cpu_secs = time.perf_counter() - t, time.thread_time() - cpu
        print(json.dumps({"bench": "flat", "engine": f"faiss-{faiss.__version__}", "metric": metric, "n": base.shape[0],
                          "dim": d, "queries": len(query), "k": args.k, "qps": len(query) / secs,
                          "cpu_qps": len(query) / cpu_secs,
                          "recall": recall(found, gt, args.k), "build_s": build}), flush=True)


def hnsw(args):
    """hnswlib, faiss IndexHNSWFlat and usearch with the same M / efConstruction, one thread, one query per call."""
    base = np.load(os.path.join(args.data, "base.npy"))
    query = np.load(os.path.join(args.data, "query.npy"))[: args.queries]
    gt = np.load(os.path.join(args.data, f"gt_{args.metric}_ids.npy"))
    n = len(base) if args.limit == 0 else min(args.limit, len(base))
    base = base[:n]
    if n != len(np.load(os.path.join(args.data, "base.npy"), mmap_mode="r")):
        raise SystemExit("--limit needs brute-force ground truth: use the full base for peers")
    d, k = base.shape[1], 10
    efs = [int(e) for e in args.ef.split(",")]
    if args.metric != "cosine":
        raise SystemExit("peers: only cosine is wired")
    nb = (base / np.linalg.norm(base, axis=1, keepdims=True)).astype(np.float32)
    nq = (query / np.linalg.norm(query, axis=1, keepdims=True)).astype(np.float32)

    def report(engine, build_s, ef, secs, found):
        print(json.dumps({"bench": "hnsw", "engine": engine, "metric": args.metric, "n": n, "dim": d, "m": args.m,
                          "ef_construction": args.ef_construction, "ef": ef, "queries": len(query),
                          "qps": len(query) / secs, "recall": recall(found, gt, k), "build_s": build_s,
                          "build_vectors_per_s": n / build_s}), flush=True)

    if "hnswlib" in args.engines:
        import hnswlib
        idx = hnswlib.Index(space="cosine", dim=d)
        idx.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=1)
        idx.set_num_threads(1)
        t = time.time(); idx.add_items(base, np.arange(n), num_threads=1); build = time.time() - t
        if args.build_threads > 1:  # the parallel build, for the build-throughput comparison only
            par = hnswlib.Index(space="cosine", dim=d)
            par.init_index(max_elements=n, M=args.m, ef_construction=args.ef_construction, random_seed=1)
            t = time.time(); par.add_items(base, np.arange(n), num_threads=args.build_threads)
            par_s = time.time() - t
            print(json.dumps({"bench": "hnsw_build", "engine": "hnswlib-0.8.0", "n": n, "build_threads": args.build_threads,
                              "build_s": par_s, "build_vectors_per_s": n / par_s}), flush=True)
            del par
        for ef in efs:
            idx.set_ef(ef)
            found = np.empty((len(query), k), dtype=np.int64)
            t = time.perf_counter()
            for i in range(len(query)):
                labels, _ = idx.knn_query(query[i:i + 1], k=k, num_threads=1)
                found[i] = labels[0]
            report("hnswlib-0.8.0", build, ef, time.perf_counter() - t, found)
    if "faiss" in args.engines:
        import faiss
        faiss.omp_set_num_threads(1)
        idx = faiss.IndexHNSWFlat(d, args.m, faiss.METRIC_INNER_PRODUCT)
        idx.hnsw.efConstruction = args.ef_construction
        t = time.time(); idx.add(nb); build = time.time() - t
        for ef in efs:
            idx.hnsw.efSearch = ef
            found = np.empty((len(query), k), dtype=np.int64)
            t = time.perf_counter()
            for i in range(len(query)):
                _, I = idx.search(nq[i:i + 1], k)
                found[i] = I[0]
            report(f"faiss-hnsw-{faiss.__version__}", build, ef, time.perf_counter() - t, found)
    if "usearch" in args.engines:
        from usearch.index import Index
        idx = Index(ndim=d, metric="cos", connectivity=args.m, expansion_add=args.ef_construction)
        t = time.time(); idx.add(np.arange(n), base, threads=1); build = time.time() - t
        for ef in efs:
            idx.expansion_search = ef
            found = np.empty((len(query), k), dtype=np.int64)
            t = time.perf_counter()
            for i in range(len(query)):
                m = idx.search(query[i], k, threads=1)
                found[i, :len(m.keys)] = m.keys
            report("usearch-2.26.6", build, ef, time.perf_counter() - t, found)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    f = sub.add_parser("flat")
    f.add_argument("--data", required=True)
    f.add_argument("--metrics", default="cosine,l2,l1,dot")
    f.add_argument("--queries", type=int, default=1000)
    f.add_argument("-k", type=int, default=10)
    h = sub.add_parser("hnsw")
    h.add_argument("--data", required=True)
    h.add_argument("--metric", default="cosine")
    h.add_argument("--m", type=int, default=16)
    h.add_argument("--ef-construction", type=int, default=200)
    h.add_argument("--ef", default="10,20,40,80,160,320")
    h.add_argument("--queries", type=int, default=1000)
    h.add_argument("--limit", type=int, default=0)
    h.add_argument("--engines", default="hnswlib,faiss,usearch")
    h.add_argument("--build-threads", type=int, default=1)
    args = p.parse_args()
    {"flat": flat, "hnsw": hnsw}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
