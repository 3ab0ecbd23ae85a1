#!/usr/bin/env python3
"""Time to rebalance after adding a node to a cluster holding 1,000,000 points: a manager, 2 nodes and a gateway
(real processes, loopback), a store of 4 shards × 1 replica (32-d) loaded through REST, then a third node joins
and `rvdb rebalance` moves one shard to it. Standard library only.

    python3 bench/rebalance_1m.py   (uses $CARGO_TARGET_DIR/release/rvdb, default ~/.cache/rvdb-target)
"""
import json, os, subprocess, sys, threading, time, urllib.request, random, shutil
B = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/rvdb-target")), "release", "rvdb")
import tempfile
D = tempfile.mkdtemp(prefix="rvdb-rebalance-"); shutil.rmtree(D, ignore_errors=True); os.makedirs(D)
def spawn(args):
    p = subprocess.Popen([B, *args, "--log", "warn"], stdout=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("RVDB_READY"):
            f = dict(kv.split("=", 1) for kv in line.split()[1:]); threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start(); return p, f
m, mf = spawn(["manager", "--grpc-addr", "127.0.0.1:0", "--persistence-dir", f"{D}/m", "--heartbeat-interval", "200", "--node-timeout", "2000"])
mu = mf["grpc"]
nodes = [spawn(["node", "--grpc-addr", "127.0.0.1:0", "--persistence-dir", f"{D}/n{i}", "--manager", mu, "--node-id", f"n{i}"]) for i in (1, 2)]
time.sleep(2)
g, gf = spawn(["gateway", "--manager", mu, "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0"])
base = gf["mcp"].rsplit("/mcp", 1)[0]
def call(method, path, body):
    r = urllib.request.Request(base + path, data=json.dumps(body).encode(), method=method, headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(r, timeout=120).read())
DIM = 32
call("POST", "/v1/stores", {"name": "big", "dimension": DIM, "metric": "euclidean", "shards": 4, "replication_factor": 1})
rng = random.Random(1); t = time.time()
N = 1_000_000
for s in range(0, N, 5000):
    call("PUT", "/v1/stores/big/points", {"points": [{"id": f"p{i}", "vector": [rng.random() for _ in range(DIM)]} for i in range(s, s + 5000)]})
print(f"loaded {N} in {time.time()-t:.0f} s", flush=True)
n3 = spawn(["node", "--grpc-addr", "127.0.0.1:0", "--persistence-dir", f"{D}/n3", "--manager", mu, "--node-id", "n3"])
time.sleep(2)
t = time.time()
out = subprocess.run([B, "rebalance", "--manager", mu], capture_output=True, text=True)
print(f"rebalance wall {time.time()-t:.1f} s: {out.stdout.strip()} {out.stderr.strip()[-300:]}", flush=True)
print(call("POST", "/v1/stores/big/points/count", {}))
for p in [m, g, n3[0]] + [n[0] for n in nodes]:
    p.kill()
shutil.rmtree(D, ignore_errors=True)
