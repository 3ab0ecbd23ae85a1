"""Summarises bench/results.jsonl: the HNSW table per ef, QPS interpolated at recall@10 = 0.95 for every engine
(log-linear between the two sweep points around it) with rvdb's ratio to each peer, build throughput, memory per
vector, and the filtered runs.   python3 bench/summary.py [bench/results.jsonl]"""
import json
import math
import sys
from collections import defaultdict

TARGET = 0.95


def qps_at(points, target=TARGET):
    """QPS at `target` recall, interpolated in log(QPS) between the sweep points around it."""
    pts = sorted((p["recall"], p["qps"]) for p in points)
    for (r0, q0), (r1, q1) in zip(pts, pts[1:]):
        if r0 <= target <= r1:
            if r1 == r0:
                return max(q0, q1)
            t = (target - r0) / (r1 - r0)
            return math.exp(math.log(q0) + t * (math.log(q1) - math.log(q0)))
    if pts and pts[0][0] >= target:
        return pts[0][1]  # even the smallest ef reaches the target
    return None


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "bench/results.jsonl"
    rows = [json.loads(l) for l in open(path) if l.strip().startswith("{")]
    curves = defaultdict(list)
    builds = {}
    for r in rows:
        if r.get("bench") == "hnsw":
            name = r["engine"] + (f"-{r['quantization']}" if r.get("quantization", "none") != "none" else "")
            if r.get("build_threads", 1) > 1:
                name += f"-{r['build_threads']}t"
            curves[name].append(r)
            builds[name] = (r["build_s"], r["build_vectors_per_s"], r.get("build_threads", 1), r.get("bytes_per_vector"))
        elif r.get("bench") == "hnsw_build":
            builds[f"{r['engine']}-{r['build_threads']}t"] = (r["build_s"], r["build_vectors_per_s"], r["build_threads"], None)
    if not curves:
        print("no hnsw rows")
        return
    print("## HNSW, one query per call, one search thread")
    print("| engine | ef | recall@10 | QPS |")
    print("|---|---|---|---|")
    for name, pts in curves.items():
        for p in sorted(pts, key=lambda p: p["ef"]):
            print(f"| {name} | {p['ef']} | {p['recall']:.4f} | {p['qps']:,.0f} |")
    print(f"\n## QPS at recall@10 = {TARGET}")
    at = {name: qps_at(pts) for name, pts in curves.items()}
    rvdb = [n for n in at if n.startswith("rvdb")]
    peers = [n for n in at if not n.startswith("rvdb")]
    print("| engine | QPS @ 0.95 | " + " | ".join(f"{r} / it" for r in rvdb) + " |")
    print("|---|---|" + "---|" * len(rvdb))
    for name in at:
        q = at[name]
        ratios = [f"{at[r] / q:.2f}x" if q and at[r] else "-" for r in rvdb]
        print(f"| {name} | {q:,.0f} | " + " | ".join(ratios) + " |" if q else f"| {name} | n/a | |")
    print("\n## Build (390k x 50 unless noted)")
    print("| engine | threads | build s | vectors/s | bytes/vector (rvdb: flat + graph + metadata) |")
    print("|---|---|---|---|---|")
    for name, (s, vps, t, bpv) in builds.items():
        print(f"| {name} | {t} | {s:.1f} | {vps:,.0f} | {bpv or ''} |")
    filt = [r for r in rows if r.get("bench") == "hnsw_filtered"]
    if filt:
        print("\n## Filtered search (exact ground truth under the filter)")
        print("| quantization | filter | plan | ef | recall@10 | QPS |")
        print("|---|---|---|---|---|---|")
        for r in filt:
            print(f"| {r['quantization']} | {r['filter']} | {r['plan']} | {r['ef']} | {r['recall']:.4f} | {r['qps']:,.0f} |")


if __name__ == "__main__":
    main()
