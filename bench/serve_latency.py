#!/usr/bin/env python3
"""Latency and throughput of a real `rvdb serve` process as a client sees them (one client, one keep-alive
connection, loopback): MCP `insert_vectors` throughput, REST search and MCP `search_vectors` p50 / p99, and the
transport floor (`GET /healthz`). Standard library only, so it measures any rvdb binary the same way (before /
after a change).

    python3 bench/serve_latency.py --bin target/release/rvdb [--points 20000] [--dim 50] [--queries 3000]
"""
import argparse
import http.client
import json
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse


def start(binary, data):
    proc = subprocess.Popen([binary, "serve", "--persistence-dir", f"{data}/d", "--backup-dir", f"{data}/b",
                             "--grpc-addr", "127.0.0.1:0", "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0",
                             "--log", "warn"], stdout=subprocess.PIPE, text=True)
    ready, fields = threading.Event(), {}

    def read():
        for line in proc.stdout:
            if line.startswith("RVDB_READY"):
                fields.update(kv.split("=", 1) for kv in line.split()[1:])
                ready.set()
    threading.Thread(target=read, daemon=True).start()
    if not ready.wait(120):
        proc.kill()
        sys.exit("rvdb serve did not start")
    return proc, fields["mcp"]


class Conn:
    def __init__(self, mcp_url):
        u = urllib.parse.urlparse(mcp_url)
        self.c = http.client.HTTPConnection(u.hostname, u.port)
        self.c.connect()
        import socket
        self.c.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def call(self, method, path, body=None, headers=None):
        data = None if body is None else json.dumps(body)
        h = {"content-type": "application/json", **(headers or {})}
        self.c.request(method, path, body=data, headers=h)
        r = self.c.getresponse()
        payload = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {payload[:300]!r}")
        return payload


def mcp(conn, i, tool, arguments):
    body = {"jsonrpc": "2.0", "id": i, "method": "tools/call", "params": {
        "name": tool, "arguments": arguments, "_meta": {
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientCapabilities": {},
            "io.modelcontextprotocol/clientInfo": {"name": "serve-latency", "version": "1"}}}}
    out = conn.call("POST", "/mcp", body, {"accept": "application/json, text/event-stream",
                                           "mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call",
                                           "mcp-name": tool})
    if b'"isError":true' in out:
        raise RuntimeError(out[:300])
    return out


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round((len(xs) - 1) * p))]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--points", type=int, default=20000)
    ap.add_argument("--dim", type=int, default=50)
    ap.add_argument("--queries", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=500)
    a = ap.parse_args()
    rng = random.Random(7)
    data = tempfile.mkdtemp(prefix="rvdb-serve-latency-")
    proc, url = start(a.bin, data)
    try:
        conn = Conn(url)
        mcp(conn, 0, "create_store", {"store": "lat", "dimension": a.dim, "metric": "cosine"})
        vec = lambda: [rng.uniform(-1, 1) for _ in range(a.dim)]
        batches = [[{"id": f"p{i}", "vector": vec(), "metadata": {"i": i}} for i in range(s, min(s + a.batch, a.points))]
                   for s in range(0, a.points, a.batch)]
        t = time.perf_counter()
        for n, b in enumerate(batches):
            mcp(conn, n + 1, "insert_vectors", {"store": "lat", "points": b})
        insert_s = time.perf_counter() - t
        qs = [vec() for _ in range(a.queries + 100)]
        floor, rest, via_mcp = [], [], []
        for i, q in enumerate(qs):
            t = time.perf_counter()
            conn.call("GET", "/healthz")
            floor.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = conn.call("POST", "/v1/stores/lat/search", {"vector": q, "k": 10})
            rest.append(time.perf_counter() - t)
            assert len(json.loads(out)["results"]) == 10
            t = time.perf_counter()
            mcp(conn, 10_000 + i, "search_vectors", {"store": "lat", "vector": q, "k": 10})
            via_mcp.append(time.perf_counter() - t)
        us = lambda xs, p: round(pct(xs[100:], p) * 1e6, 1)
        print(json.dumps({
            "bench": "serve_latency", "bin": a.bin, "points": a.points, "dim": a.dim, "queries": a.queries,
            "mcp_insert_points_per_s": round(a.points / insert_s),
            "floor_healthz_us": {"p50": us(floor, 0.5), "p99": us(floor, 0.99)},
            "rest_search_us": {"p50": us(rest, 0.5), "p99": us(rest, 0.99)},
            "mcp_search_vectors_us": {"p50": us(via_mcp, 0.5), "p99": us(via_mcp, 0.99)},
        }))
    finally:
        proc.terminate()
        proc.wait(30)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
