"""Issue #15 through the user-facing API (REST on a real `rvdb serve`; the MCP side is in test_mcp_search): distances at the ends of the
f32 range are right and finite, every hit is returned, filters on deep and odd keys find their points, metadata that
is accepted survives backup / restore and export / import, and out-of-range components are named as such."""
import math

import pytest

from test_rest import Rest

F32_MAX = 3.4028234663852886e38


def search(api, store, vector, k=10, **extra):
    return api.ok("POST", f"/v1/stores/{store}/search", {"vector": vector, "k": k, **extra})["results"]


def by_id(results):
    return {r["id"]: r["distance"] for r in results}


def test_cosine_of_extreme_vectors_lies_in_0_2(server):
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "cos", "dimension": 2, "metric": "cosine", "shards": 2}, status=201)
    api.ok("PUT", "/v1/stores/cos/points", {"points": [
        {"id": "big", "vector": [2e19, 0]}, {"id": "huge", "vector": [3e38, 3e38]},
        {"id": "tiny", "vector": [1e-23, 0]}, {"id": "opposite", "vector": [-1, 0]}]})
    for q in ([1, 0], [1e-23, 0], [3e38, 0]):
        d = by_id(search(api, "cos", q))
        assert set(d) == {"big", "huge", "tiny", "opposite"}, (q, d)
        assert all(0.0 <= x <= 2.0 for x in d.values()), (q, d)
        assert abs(d["big"]) < 1e-6 and abs(d["tiny"]) < 1e-6, (q, d)
        assert abs(d["huge"] - (1 - 1 / math.sqrt(2))) < 1e-6, (q, d)
        assert d["opposite"] == 2.0, (q, d)


@pytest.mark.parametrize("metric,want", [
    ("euclidean", [("neg", 0.0), ("zero", 1e38), ("pos", 2e38)]),
    ("manhattan", [("neg", 0.0), ("zero", 1e38), ("pos", 2e38)]),
    ("dot", [("neg", -F32_MAX), ("zero", 0.0), ("pos", F32_MAX)]),
])
def test_overflowing_distances_keep_every_hit(server, metric, want):
    api = Rest(server)
    for index in ("flat", "hnsw"):
        store = f"{metric}-{index}"
        api.ok("POST", "/v1/stores", {"name": store, "dimension": 2, "metric": metric, "index": index},
               status=201)
        api.ok("PUT", f"/v1/stores/{store}/points", {"points": [
            {"id": "pos", "vector": [1e38, 0], "metadata": {"keep": True}},
            {"id": "neg", "vector": [-1e38, 0], "metadata": {"keep": True}},
            {"id": "zero", "vector": [0, 0], "metadata": {"keep": False}}]})
        got = [(r["id"], r["distance"]) for r in search(api, store, [-1e38, 0], k=3)]
        assert [g[0] for g in got] == [w[0] for w in want], (store, got)
        for (_, d), (_, w) in zip(got, want):
            assert math.isclose(d, w, rel_tol=1e-6, abs_tol=1e-30), (store, got)
        keep = {"must": [{"key": "keep", "match": {"value": True}}]}
        got = [r["id"] for r in search(api, store, [-1e38, 0], k=3, filter=keep)]
        assert got == [w[0] for w in want if w[0] != "zero"], (store, got)


def test_filters_on_deep_and_empty_keys(server):
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "f", "dimension": 2, "shards": 2}, status=201)
    api.ok("PUT", "/v1/stores/f/points", {"points": [
        {"id": "deep5", "vector": [1, 0], "metadata": {"a": {"b": {"c": {"d": {"e": "x"}}}}}},
        {"id": "deep6", "vector": [0, 1], "metadata": {"a": {"b": {"c": {"d": {"e": {"f": ["x", "y"]}}}}}}},
        {"id": "empty", "vector": [1, 1], "metadata": {"": {"b": "y"}}},
        {"id": "other", "vector": [1, 2], "metadata": {"a": "x"}}]})
    cases = [
        ({"must": [{"key": "a.b.c.d.e", "match": {"value": "x"}}]}, ["deep5"]),
        ({"must": [{"key": "a.b.c.d.e", "match": {"any": ["x", "z"]}}]}, ["deep5"]),
        ({"must": [{"key": "a.b.c.d.e.f", "match": {"value": "y"}}]}, ["deep6"]),
        ({"must": [{"key": ".b", "match": {"value": "y"}}]}, ["empty"]),
        ({"should": [{"key": ".b", "match": {"value": "y"}}]}, ["empty"]),
    ]
    for f, want in cases:
        got = sorted(r["id"] for r in search(api, "f", [1, 0], k=10, filter=f))
        assert got == want, (f, got)


def test_accepted_metadata_round_trips_and_inflating_metadata_is_refused(server):
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "m", "dimension": 2}, status=201)
    # 100 KB as sent, 325 KB as stored: refused before anything is written.
    inflating = {"a": [1e9] * 25_000}
    api.err("PUT", "/v1/stores/m/points", {"points": [{"id": "ok", "vector": [1, 0]},
                                                        {"id": "big", "vector": [1, 0], "metadata": inflating}]},
            400, "invalid_argument", "as stored")
    api.err("GET", "/v1/stores/m/points/ok", None, 404, "not_found")
    # 32 levels are accepted, 33 are not.
    def nested(levels):
        doc = {}
        for _ in range(levels - 1):
            doc = {"a": doc}
        return doc
    api.err("PUT", "/v1/stores/m/points", {"points": [{"id": "d33", "vector": [1, 0], "metadata": nested(33)}]},
            400, "invalid_argument", "levels deep")
    near_limit = {"s": "x" * (256 * 1024 - 20)}
    api.ok("PUT", "/v1/stores/m/points", {"points": [
        {"id": "d32", "vector": [1, 0], "metadata": nested(32)},
        {"id": "near", "vector": [0, 1], "metadata": near_limit}]})
    api.ok("POST", "/v1/stores/m/backups", {"name": "mb"}, status=201)
    api.ok("POST", "/v1/backups/mb/restore", {"store": "m2"}, status=201)
    e = api.ok("POST", "/v1/stores/m/export", {"file": "m.jsonl"}, status=201)
    api.ok("POST", "/v1/stores/m3/import", {"file": e["file"]}, status=201)
    for store in ("m2", "m3"):
        assert api.ok("GET", f"/v1/stores/{store}/points/d32")["metadata"] == nested(32)
        assert api.ok("GET", f"/v1/stores/{store}/points/near")["metadata"] == near_limit


def test_out_of_range_components_are_named(server):
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "r", "dimension": 2}, status=201)
    raw = b'{"points": [{"id": "p", "vector": [1e39, 0]}]}'
    msg = api.err("PUT", "/v1/stores/r/points", None, 400, "invalid_argument", "outside the range",
                  raw=raw, headers={"content-type": "application/json"})
    assert "is inf" not in msg, msg
