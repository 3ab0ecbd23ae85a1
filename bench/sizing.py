#!/usr/bin/env python3
"""Memory per vector of an HNSW store at a given dimension, as `describe_store` reports it (f32 graph and SQ8
graph) and as the process's resident memory grew while the store was loaded and built, through `rvdb serve`'s
REST API; the basis of the README's sizing for 100 million and 1 billion vectors.
Points are random unit vectors with a small metadata document ({"doc": i, "lang": "en"}). Standard library only.

    python3 bench/sizing.py [--dimension 768] [--points 20000]
"""
import argparse, json, os, random, shutil, subprocess, tempfile, threading, time, urllib.request

ap = argparse.ArgumentParser()
ap.add_argument("--dimension", type=int, default=768)
ap.add_argument("--points", type=int, default=20000)
a = ap.parse_args()
B = os.path.join(os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/rvdb-target")), "release", "rvdb")
D = tempfile.mkdtemp(prefix="rvdb-sizing-")
p = subprocess.Popen([B, "serve", "--persistence-dir", D, "--mcp-port", "0", "--grpc-addr", "127.0.0.1:0",
                      "--gateway-grpc-addr", "127.0.0.1:0", "--log", "warn"], stdout=subprocess.PIPE, text=True)
fields = {}
for line in p.stdout:
    if line.startswith("RVDB_READY"):
        fields = dict(kv.split("=", 1) for kv in line.split()[1:])
        break
threading.Thread(target=lambda: [None for _ in p.stdout], daemon=True).start()
base = fields["mcp"].rsplit("/mcp", 1)[0]


def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    r = urllib.request.Request(base + path, data=data, method=method, headers={"content-type": "application/json"})
    return json.loads(urllib.request.urlopen(r, timeout=600).read())


def rss():
    with open(f"/proc/{p.pid}/status") as f:
        return next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))


try:
    rng = random.Random(7)
    for q in ("none", "sq8"):
        name, before = f"s{q}", rss()
        call("POST", "/v1/stores", {"name": name, "dimension": a.dimension, "metric": "cosine", "index": "hnsw",
                                    "quantization": q})
        for s in range(0, a.points, 500):
            pts = [{"id": f"d{i}", "vector": [rng.gauss(0, 1) for _ in range(a.dimension)],
                    "metadata": {"doc": i, "lang": "en"}} for i in range(s, min(s + 500, a.points))]
            call("PUT", f"/v1/stores/{name}/points", {"points": pts})
        while (d := call("GET", f"/v1/stores/{name}"))["index_status"] != "ready":
            time.sleep(1)
        print(json.dumps({"dimension": a.dimension, "quantization": q, "points": d["points"],
                          "memory_bytes_per_vector": d["memory_bytes_per_vector"],
                          "rss_bytes_per_vector": (rss() - before) // max(1, d["points"]),
                          "by_component": d["memory_bytes_per_vector_by_component"],
                          "raw_f32_bytes": 4 * a.dimension}), flush=True)
finally:
    p.kill()
    shutil.rmtree(D, ignore_errors=True)
