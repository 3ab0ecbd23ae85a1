#!/usr/bin/env python3
"""Many stores: the cost of creating and dropping stores through REST on a real `rvdb serve` process, and its
memory. Two scenarios (the ones of issue #20 item 7):

- `--stores N` stores of 1 shard each: create them one after the other (p50 / p99 / max per create), write a few
  points into each and read one back, restart the server (time to ready with N stores), then drop them all.
- one store of `--shards S` shards: create, write, count, drop.

RSS of the server process (from /proc) after each step. Standard library only, so any rvdb binary is measured the
same way (before / after a change).

    python3 bench/stores.py --bin target/release/rvdb [--stores 1000] [--shards 1024] [--points 8]
"""
import argparse
import json
import os
import random
import shutil
import tempfile
import time

from serve_latency import Conn, pct, start


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def summary(times):
    return {"n": len(times), "total_s": round(sum(times), 3), "p50_ms": round(pct(times, 0.5) * 1e3, 2),
            "p99_ms": round(pct(times, 0.99) * 1e3, 2), "max_ms": round(max(times) * 1e3, 2)}


def timed(fn):
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def points(n, dim, rng):
    return [{"id": f"p{i}", "vector": [rng.random() for _ in range(dim)], "metadata": {"i": i}} for i in range(n)]


def serve(binary, data, max_stores):
    os.environ["RVDB_MAX_VECTOR_STORES"] = str(max_stores)
    t = time.perf_counter()
    proc, url = start(binary, data)
    return proc, Conn(url), time.perf_counter() - t


def stop(proc):
    proc.terminate()
    try:
        proc.wait(30)
    except Exception:
        proc.kill()
        proc.wait()


def many_stores(args, data, rng):
    proc, c, _ = serve(args.bin, data, args.stores + 10)
    out = {"scenario": f"{args.stores} stores x 1 shard", "rss_start_mib": round(rss_mib(proc.pid), 1)}
    names = [f"s{i:05d}" for i in range(args.stores)]
    body = lambda n: {"name": n, "dimension": args.dim, "metric": "cosine", "shards": 1}
    out["create"] = summary([timed(lambda n=n: c.call("POST", "/v1/stores", body(n))) for n in names])
    out["rss_created_mib"] = round(rss_mib(proc.pid), 1)
    pts = points(args.points, args.dim, rng)
    write = [timed(lambda n=n: c.call("PUT", f"/v1/stores/{n}/points", {"points": pts})) for n in names]
    out["write_points"] = summary(write)
    sample = rng.sample(names, min(50, len(names)))
    for n in sample:
        got = json.loads(c.call("GET", f"/v1/stores/{n}/points/p1"))
        assert got["id"] == "p1", got
    out["rss_written_mib"] = round(rss_mib(proc.pid), 1)
    stop(proc)
    proc, c, ready = serve(args.bin, data, args.stores + 10)
    out["restart_to_ready_s"] = round(ready, 2)
    listed = json.loads(c.call("GET", "/v1/stores"))["stores"]
    assert len(listed) == args.stores, len(listed)
    for n in sample:
        count = json.loads(c.call("POST", f"/v1/stores/{n}/points/count", {}))["count"]
        assert count == args.points, (n, count)
    out["rss_restarted_mib"] = round(rss_mib(proc.pid), 1)
    out["drop"] = summary([timed(lambda n=n: c.call("DELETE", f"/v1/stores/{n}")) for n in names])
    assert json.loads(c.call("GET", "/v1/stores"))["stores"] == []
    out["rss_dropped_mib"] = round(rss_mib(proc.pid), 1)
    # the same names again: a re-created store starts empty
    c.call("POST", "/v1/stores", body(names[0]))
    assert json.loads(c.call("POST", f"/v1/stores/{names[0]}/points/count", {}))["count"] == 0
    stop(proc)
    return out


def many_shards(args, data, rng):
    proc, c, _ = serve(args.bin, data, 10)
    out = {"scenario": f"1 store x {args.shards} shards", "rss_start_mib": round(rss_mib(proc.pid), 1)}
    out["create_s"] = round(timed(lambda: c.call(
        "POST", "/v1/stores", {"name": "wide", "dimension": args.dim, "metric": "cosine", "shards": args.shards})), 3)
    out["rss_created_mib"] = round(rss_mib(proc.pid), 1)
    pts = points(args.shards * 4, args.dim, rng)
    out["write_s"] = round(timed(lambda: c.call("PUT", "/v1/stores/wide/points", {"points": pts})), 3)
    count = json.loads(c.call("POST", "/v1/stores/wide/points/count", {}))["count"]
    assert count == len(pts), count
    out["drop_s"] = round(timed(lambda: c.call("DELETE", "/v1/stores/wide")), 3)
    out["recreate_s"] = round(timed(lambda: c.call(
        "POST", "/v1/stores", {"name": "wide", "dimension": args.dim, "metric": "cosine", "shards": args.shards})), 3)
    assert json.loads(c.call("POST", "/v1/stores/wide/points/count", {}))["count"] == 0
    out["rss_end_mib"] = round(rss_mib(proc.pid), 1)
    stop(proc)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--stores", type=int, default=1000)
    ap.add_argument("--shards", type=int, default=1024)
    ap.add_argument("--points", type=int, default=8)
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--only", choices=["stores", "shards"])
    args = ap.parse_args()
    rng = random.Random(7)
    for name, fn in (("stores", many_stores), ("shards", many_shards)):
        if args.only and args.only != name:
            continue
        data = tempfile.mkdtemp(prefix="rvdb-stores-")
        try:
            print(json.dumps(fn(args, data, rng)), flush=True)
        finally:
            shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
