#!/usr/bin/env python3
"""Cluster operations on 1,000,000 points (real processes on loopback: a manager, storage nodes and a gateway; a
store of 32-d points loaded through REST). Standard library only.

    python3 bench/cluster_1m.py rebalance   # 2 nodes, 4 shards x 1 replica; a third node joins and
                                            # `rvdb rebalance` moves one shard to it
    python3 bench/cluster_1m.py reshard     # 3 nodes, 4 shards x 1 replica; `rvdb reshard` to 8, then to 2

Uses $CARGO_TARGET_DIR/release/rvdb (default ~/.cache/rvdb-target). RVDB_BENCH_POINTS changes the 1,000,000.
"""
import json, os, subprocess, sys, threading, time, urllib.request, random, shutil, tempfile

B = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/rvdb-target")), "release", "rvdb")
MODE = sys.argv[1] if len(sys.argv) > 1 else "rebalance"
assert MODE in ("rebalance", "reshard"), "usage: cluster_1m.py rebalance|reshard"
N, DIM = int(os.environ.get("RVDB_BENCH_POINTS", 1_000_000)), 32
D = tempfile.mkdtemp(prefix=f"rvdb-{MODE}-")


def spawn(args):
    p = subprocess.Popen([B, *args, "--log", "warn"], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("RVDB_READY"):
            f = dict(kv.split("=", 1) for kv in line.split()[1:])
            threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
            return p, f
    raise SystemExit(f"{args[0]} did not start")


# the command is measured, not the automatic rebalance on join
m, mf = spawn(["manager", "--grpc-addr", "127.0.0.1:0", "--persistence-dir", f"{D}/m", "--heartbeat-interval", "200",
               "--node-timeout", "2000", "--rebalance-on-join", "false"])
mu = mf["grpc"]
node = lambda i: spawn(["node", "--grpc-addr", "127.0.0.1:0", "--persistence-dir", f"{D}/n{i}", "--manager", mu,
                        "--node-id", f"n{i}"])
procs = [m] + [node(i)[0] for i in (1, 2, 3)[: 2 if MODE == "rebalance" else 3]]
time.sleep(2)
g, gf = spawn(["gateway", "--manager", mu, "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0"])
procs.append(g)
base = gf["mcp"].rsplit("/mcp", 1)[0]


def call(method, path, body):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method,
                               headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(r, timeout=120).read())


def rvdb(*args):
    t = time.time()
    out = subprocess.run([B, *args, "--manager", mu], capture_output=True, text=True)
    print(f"rvdb {' '.join(args)}: wall {time.time() - t:.1f} s: {out.stdout.strip()} {out.stderr.strip()[-300:]}",
          flush=True)


try:
    call("POST", "/v1/stores", {"name": "big", "dimension": DIM, "metric": "euclidean", "shards": 4,
                                "replication_factor": 1})
    rng, t = random.Random(1), time.time()
    for s in range(0, N, 5000):
        call("PUT", "/v1/stores/big/points", {"points": [{"id": f"p{i}", "vector": [rng.random() for _ in range(DIM)]}
                                                         for i in range(s, min(s + 5000, N))]})
    print(f"loaded {N} in {time.time() - t:.0f} s", flush=True)
    if MODE == "rebalance":
        procs.append(node(3)[0])
        time.sleep(2)
        rvdb("rebalance")
        print(call("POST", "/v1/stores/big/points/count", {}))
    else:
        for shards in (8, 2):
            rvdb("reshard", "--store", "big", "--shards", str(shards))
            print(call("POST", "/v1/stores/big/points/count", {}), flush=True)
finally:
    for p in procs:
        p.kill()
    shutil.rmtree(D, ignore_errors=True)
