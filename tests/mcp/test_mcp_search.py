"""Search features through the MCP gateway with the official Python MCP SDK: HNSW stores (built in the
background, persisted across a restart), SQ8 quantization, metadata filters and their errors."""
import asyncio
import json
import math
import random
import time

from mcp import Client

from test_mcp_gateway import call_err, call_ok


def run(coro):
    return asyncio.run(coro)


def brute(points, q, k, keep=lambda m: True):
    d = sorted((sum((a - b) ** 2 for a, b in zip(v, q)), pid) for pid, (v, m) in points.items() if keep(m))
    return [pid for _, pid in d[:k]]


async def wait_ready(c, store, timeout=60):
    deadline = time.time() + timeout
    while True:
        out = call_ok(await c.call_tool("describe_store", {"store": store}))
        if out["index_status"] == "ready":
            return out
        assert time.time() < deadline, out
        await asyncio.sleep(0.1)


def test_hnsw_store_with_filters_survives_a_restart(make_server):
    rnd = random.Random(7)
    points = {}
    for i in range(1500):
        points[f"p{i}"] = ([rnd.uniform(-1, 1) for _ in range(12)],
                           {"lang": ["en", "de", "fr"][i % 3], "year": 2000 + i % 25, "tags": [f"t{i % 7}"]})
    queries = [[rnd.uniform(-1, 1) for _ in range(12)] for _ in range(5)]
    lang_de = {"must": [{"key": "lang", "match": {"value": "de"}}]}
    complex_filter = {"must": [{"key": "year", "range": {"gte": 2010, "lt": 2020}}],
                      "should": [{"key": "tags", "match": {"any": ["t1", "t2"]}}],
                      "must_not": [{"key": "lang", "match": {"value": "fr"}}]}

    def keep_complex(m):
        return 2010 <= m["year"] < 2020 and m["tags"][0] in ("t1", "t2") and m["lang"] != "fr"

    s = make_server("data")

    async def first():
        async with Client(s.mcp_url, mode="2026-07-28") as c:
            out = call_ok(await c.call_tool("create_store", {"store": "h", "dimension": 12, "metric": "euclidean",
                                                             "index": "hnsw", "m": 12, "ef_construction": 100}))
            assert out["index"] == "hnsw"
            call_ok(await c.call_tool("create_store", {"store": "q", "dimension": 12, "metric": "euclidean",
                                                       "index": "hnsw", "quantization": "sq8"}))
            batch = [{"id": pid, "vector": v, "metadata": m} for pid, (v, m) in points.items()]
            for store in ("h", "q"):
                call_ok(await c.call_tool("insert_vectors", {"store": store, "points": batch}))
            for store in ("h", "q"):
                info = await wait_ready(c, store)
                assert info["points"] == 1500 and info["quantization"] == ("sq8" if store == "q" else "none")
                assert info["memory_bytes_per_vector"] > 0
                # by component: they add up (each rounded down), f32 vectors at least 4 bytes a dimension, a graph
                # that holds its own copy (f32, or 1-byte SQ8 codes), metadata counted
                parts = info["memory_bytes_per_vector_by_component"]
                assert set(parts) == {"vectors", "codes", "ids", "graph", "metadata", "text"}, parts
                assert info["memory_bytes_per_vector"] - 6 <= sum(parts.values()) <= info["memory_bytes_per_vector"]
                assert parts["vectors"] >= 4 * 12 and parts["metadata"] > 0 and parts["ids"] > 0
                assert parts["graph"] >= (12 if store == "q" else 4 * 12), parts
            # exact=true is exact; the graph search agrees closely; filters are exact on these sizes
            for q in queries:
                want = brute(points, q, 10)
                exact = call_ok(await c.call_tool("search_vectors", {"store": "h", "vector": q, "k": 10, "exact": True}))
                assert [r["id"] for r in exact["results"]] == want
                for store in ("h", "q"):
                    got = call_ok(await c.call_tool("search_vectors", {"store": store, "vector": q, "k": 10, "ef": 200}))
                    assert len(set(r["id"] for r in got["results"]) & set(want)) >= 9
                    f = call_ok(await c.call_tool("search_vectors", {"store": store, "vector": q, "k": 5, "filter": lang_de}))
                    assert [r["id"] for r in f["results"]] == brute(points, q, 5, lambda m: m["lang"] == "de")
                    assert all(r["metadata"]["lang"] == "de" for r in f["results"])
                    f = call_ok(await c.call_tool("search_vectors", {"store": store, "vector": q, "k": 5, "ef": 400,
                                                                     "filter": complex_filter}))
                    want_f = brute(points, q, 5, keep_complex)
                    assert len(set(r["id"] for r in f["results"]) & set(want_f)) >= 4
                    assert all(keep_complex(r["metadata"]) for r in f["results"])
            # filter errors name the path and change nothing
            call_err(await c.call_tool("search_vectors", {"store": "h", "vector": queries[0], "filter": {"may": []}}),
                     "unknown clause")
            call_err(await c.call_tool("search_vectors", {"store": "h", "vector": queries[0],
                                                          "filter": {"must": [{"key": "year", "range": {"gte": "x"}}]}}),
                     "filter.must[0].range.gte")
            call_err(await c.call_tool("search_vectors", {"store": "h", "vector": queries[0], "filter": [1]}),
                     "filter")
            call_err(await c.call_tool("create_store", {"store": "bad", "dimension": 3, "index": "ivf"}), "flat or hnsw")
            call_err(await c.call_tool("create_store", {"store": "bad", "dimension": 3, "index": "hnsw", "m": 1}), "m must be")
            call_ok(await c.call_tool("sync_store", {"store": "h"}))
            return [r["id"] for r in call_ok(await c.call_tool(
                "search_vectors", {"store": "h", "vector": queries[0], "k": 10}))["results"]]

    before = run(first())
    s.stop()
    s.start()

    async def second():
        async with Client(s.mcp_url, mode="2026-07-28") as c:
            info = await wait_ready(c, "h")
            assert info["points"] == 1500
            after = call_ok(await c.call_tool("search_vectors", {"store": "h", "vector": queries[0], "k": 10}))
            assert [r["id"] for r in after["results"]] == before
    run(second())


def test_default_index_type_config(make_server):
    s = make_server("d", env={"RVDB_DEFAULT_INDEX_TYPE": "hnsw"})

    async def go():
        async with Client(s.mcp_url, mode="2026-07-28") as c:
            assert call_ok(await c.call_tool("create_store", {"store": "x", "dimension": 2}))["index"] == "hnsw"
            assert call_ok(await c.call_tool("create_store", {"store": "y", "dimension": 2, "index": "flat"}))["index"] == "flat"
            assert call_ok(await c.call_tool("describe_store", {"store": "y"}))["index_status"] == "none"
    run(go())


def test_overflowed_distances_are_numbers_the_sdk_accepts(server):
    """A dot product beyond f32 (-(-1e38 * 1e38)) is a number (saturated at ±3.4e38), never `null`: the SDK
    checks structuredContent against the tool's outputSchema (`distance: number`) and would reject the result."""
    points = [{"id": "big", "vector": [1e38, 0]}, {"id": "neg", "vector": [-1e38, 0]}, {"id": "one", "vector": [1, 0]}]

    async def go(mode):
        async with Client(server.mcp_url, mode=mode) as c:
            store = "dot" + mode.replace("-", "")
            call_ok(await c.call_tool("create_store", {"store": store, "dimension": 2, "metric": "dot"}))
            call_ok(await c.call_tool("insert_vectors", {"store": store, "points": points}))
            out = call_ok(await c.call_tool("search_vectors", {"store": store, "vector": [-1e38, 0], "k": 3}))
            distances = [r["distance"] for r in out["results"]]
            assert [r["id"] for r in out["results"]] == ["neg", "one", "big"], out  # every hit, in order
            assert all(isinstance(d, (int, float)) and math.isfinite(d) for d in distances), out
            assert distances == sorted(distances), out
            assert out["results"][0]["id"] == "neg", out
    for mode in ("legacy", "2026-07-28"):
        run(go(mode))
