"""The REST API (`/v1`) through real HTTP against `rvdb serve`: stores, points, search with filters, backups,
restore, export / import, one JSON error shape with matching statuses, writes that fail validation change nothing;
and schemathesis over the whole `/openapi.json` (no 5xx, every status, content type and body as documented)."""
import http.client
import json
import math
import os
import random
import shutil
import struct
import subprocess
import sys
import time
import urllib.parse

import pytest
import requests


def base_url(server):
    return server.mcp_url.rsplit("/mcp", 1)[0]


class Rest:
    """A thin client: `call` returns (status, JSON body) and checks every answer is JSON."""

    def __init__(self, server):
        self.url = base_url(server)
        self.http = requests.Session()

    def call(self, method, path, body=None, raw=None, headers=None, params=None):
        kw = {"headers": dict(headers or {}), "params": params, "timeout": 60}
        if body is not None:
            kw["json"] = body
        if raw is not None:
            kw["data"] = raw
        r = self.http.request(method, self.url + path, **kw)
        assert r.headers.get("content-type", "").startswith("application/json"), (method, path, r.status_code, r.text)
        self.last = r
        return r.status_code, r.json()

    def ok(self, method, path, body=None, status=200, **kw):
        got, data = self.call(method, path, body, **kw)
        assert got == status, (method, path, got, data)
        return data

    def err(self, method, path, body=None, status=400, code="invalid_argument", *needles, **kw):
        got, data = self.call(method, path, body, **kw)
        assert got == status, (method, path, body if raw_small(body) else "<big>", got, data)
        assert set(data) == {"error"} and set(data["error"]) - {"details"} == {"code", "message"}, data
        assert data["error"]["code"] == code, data
        for n in needles:
            assert n.lower() in data["error"]["message"].lower(), (n, data)
        self.last_details = data["error"].get("details")
        return data["error"]["message"]


def raw_small(body):
    return body is None or len(json.dumps(body)) < 2000


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def points(n, dim, seed, prefix="p"):
    rng = random.Random(seed)
    return [{"id": f"{prefix}{i}", "vector": [rng.uniform(-1, 1) for _ in range(dim)],
             "metadata": {"i": i, "lang": "en" if i % 3 == 0 else "de"}} for i in range(n)]


def euclid(a, b):
    return math.sqrt(sum((f32(x) - f32(y)) ** 2 for x, y in zip(a, b)))


def test_store_points_and_search(server):
    api = Rest(server)
    assert api.ok("GET", "/v1/stores") == {"stores": []}
    created = api.ok("POST", "/v1/stores", {"name": "docs", "dimension": 3, "metric": "euclidean", "shards": 2},
                     status=201)
    assert api.last.headers["location"] == "/v1/stores/docs"
    assert created["name"] == "docs" and created["dimension"] == 3 and created["metric"] == "euclidean"
    assert created["shards"] == 2 and created["index"] == "flat" and created["quantization"] == "none"
    api.err("POST", "/v1/stores", {"name": "docs", "dimension": 3}, 409, "already_exists", "already exists")

    pts = points(60, 3, 1)
    assert api.ok("PUT", "/v1/stores/docs/points", {"points": pts}) == {"store": "docs", "inserted": 60, "stale": 0}
    stats = api.ok("GET", "/v1/stores/docs")
    assert stats["points"] == 60 and stats["dimension"] == 3 and stats["shards"] == 2 and stats["name"] == "docs"
    assert [s["name"] for s in api.ok("GET", "/v1/stores")["stores"]] == ["docs"]

    p7 = api.ok("GET", "/v1/stores/docs/points/p7")
    assert p7["id"] == "p7" and p7["metadata"] == pts[7]["metadata"] and p7["version"] > 0
    assert [f32(x) for x in p7["vector"]] == [f32(x) for x in pts[7]["vector"]]
    assert "vector" not in api.ok("GET", "/v1/stores/docs/points/p7", params={"with_vector": "false"})
    api.err("GET", "/v1/stores/docs/points/nope", None, 404, "not_found", "nope")
    # ids are any UTF-8 without control characters, percent-encoded in the path
    api.ok("PUT", "/v1/stores/docs/points", {"points": [{"id": "a/b ü?#", "vector": [1, 2, 3]}]})
    assert api.ok("GET", "/v1/stores/docs/points/a%2Fb%20%C3%BC%3F%23")["id"] == "a/b ü?#"
    got = api.ok("POST", "/v1/stores/docs/points/get", {"ids": ["p1", "missing", "p2"], "with_vector": False})
    assert [p["id"] for p in got["points"]] == ["p1", "p2"] and "vector" not in got["points"][0]
    assert api.ok("DELETE", "/v1/stores/docs/points/a%2Fb%20%C3%BC%3F%23")["deleted"] == 1
    # ids that are also the names of the batch routes
    api.ok("PUT", "/v1/stores/docs/points", {"points": [{"id": n, "vector": [1, 2, 3]} for n in ("get", "delete")]})
    assert api.ok("GET", "/v1/stores/docs/points/get", params={"with_vector": "false"})["id"] == "get"
    assert api.ok("GET", "/v1/stores/docs/points/delete")["vector"] == [1, 2, 3]
    assert api.ok("DELETE", "/v1/stores/docs/points/get")["deleted"] == 1
    assert api.ok("DELETE", "/v1/stores/docs/points/delete")["deleted"] == 1
    api.err("GET", "/v1/stores/docs/points/get", None, 404, "not_found")

    q = [0.2, -0.1, 0.4]
    res = api.ok("POST", "/v1/stores/docs/search", {"vector": q, "k": 5})["results"]
    want = sorted(pts, key=lambda p: (euclid(q, p["vector"]), p["id"]))[:5]
    assert [r["id"] for r in res] == [p["id"] for p in want]
    assert all(abs(r["distance"] - euclid(q, p["vector"])) < 1e-4 for r, p in zip(res, want))
    assert res[0]["metadata"] == want[0]["metadata"] and "vector" not in res[0]
    flt = {"must": [{"key": "lang", "match": {"value": "en"}}], "must_not": [{"key": "i", "range": {"lt": 10}}]}
    res = api.ok("POST", "/v1/stores/docs/search",
                 {"vector": q, "k": 4, "filter": flt, "with_vector": True, "with_metadata": False, "exact": True,
                  "ef": 50})["results"]
    want = sorted([p for p in pts if p["metadata"]["lang"] == "en" and p["metadata"]["i"] >= 10],
                  key=lambda p: (euclid(q, p["vector"]), p["id"]))[:4]
    assert [r["id"] for r in res] == [p["id"] for p in want]
    assert "metadata" not in res[0] and len(res[0]["vector"]) == 3

    assert api.ok("DELETE", "/v1/stores/docs/points/p1") == {"store": "docs", "deleted": 1}
    assert api.ok("DELETE", "/v1/stores/docs/points/p1") == {"store": "docs", "deleted": 0}
    assert api.ok("POST", "/v1/stores/docs/points/delete", {"ids": ["p2", "p3", "nope"]})["deleted"] == 2
    assert api.ok("GET", "/v1/stores/docs")["points"] == 57
    assert "p2" not in [r["id"] for r in api.ok("POST", "/v1/stores/docs/search", {"vector": q, "k": 100})["results"]]
    assert api.ok("POST", "/v1/stores/docs/sync") == {"store": "docs", "synced": True}

    assert api.ok("DELETE", "/v1/stores/docs") == {"store": "docs", "deleted": True}
    api.err("GET", "/v1/stores/docs", None, 404, "not_found", "does not exist")
    # an unknown store is named in the error's fields too, with the stores that exist
    assert api.last_details == {"store": "docs", "existing_stores": [], "more_stores": 0}, api.last_details
    api.err("DELETE", "/v1/stores/docs", None, 404, "not_found")
    assert api.ok("GET", "/v1/stores") == {"stores": []}


def test_backup_restore_export_import(server):
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "src", "dimension": 4, "index": "hnsw", "m": 8, "ef_construction": 40},
           status=201)
    pts = points(300, 4, 2)
    api.ok("PUT", "/v1/stores/src/points", {"points": pts})

    b = api.ok("POST", "/v1/stores/src/backups", {"name": "b1"}, status=201)
    assert api.last.headers["location"] == "/v1/backups/b1"
    assert b["name"] == "b1" and b["store"] == "src" and b["points"] == 300 and b["bytes"] > 0
    api.err("POST", "/v1/stores/src/backups", {"name": "b1"}, 409, "already_exists")
    api.err("POST", "/v1/stores/src/backups", {"name": "../escape"}, 400, "invalid_argument", "invalid backup name")
    api.err("POST", "/v1/stores/nope/backups", {}, 404, "not_found")
    time.sleep(0.01)
    auto = api.ok("POST", "/v1/stores/src/backups", status=201)  # no body: a generated name
    assert auto["name"].startswith("src-") and auto["points"] == 300
    listed = api.ok("GET", "/v1/backups")["backups"]
    assert sorted(x["name"] for x in listed) == sorted(["b1", auto["name"]])
    assert len(api.ok("GET", "/v1/backups", params={"store": "src"})["backups"]) == 2
    assert api.ok("GET", "/v1/backups", params={"store": "other"})["backups"] == []
    api.err("GET", "/v1/backups", None, 400, "invalid_argument", params={"store": "no/such"})
    assert api.ok("GET", "/v1/backups/b1")["points"] == 300
    api.err("GET", "/v1/backups/missing", None, 404, "not_found")

    r = api.ok("POST", "/v1/backups/b1/restore", {"store": "copy", "shards": 3}, status=201)
    assert r == {"backup": "b1", "store": "copy", "points": 300, "shards": 3}
    assert api.last.headers["location"] == "/v1/stores/copy"
    assert api.ok("GET", "/v1/stores/copy")["index"] == "hnsw"
    q = {"vector": [0.3, -0.2, 0.1, 0.5], "k": 10, "exact": True}
    assert (api.ok("POST", "/v1/stores/copy/search", q)["results"]
            == api.ok("POST", "/v1/stores/src/search", q)["results"])
    api.err("POST", "/v1/backups/missing/restore", {"store": "r2"}, 404, "not_found", "b1")
    api.err("POST", "/v1/backups/b1/restore", {"store": "src"}, 409, "already_exists")
    api.err("POST", "/v1/backups/b1/restore", {"store": "r3", "shards": 0}, 400, "invalid_argument", "shards")
    assert [s["name"] for s in api.ok("GET", "/v1/stores")["stores"]] == ["copy", "src"]

    e = api.ok("POST", "/v1/stores/src/export", {"file": "src.jsonl"}, status=201)
    assert e["file"] == "src.jsonl" and e["points"] == 300 and e["path"].endswith("src.jsonl") and e["bytes"] > 0
    api.err("POST", "/v1/stores/src/export", {"file": "src.jsonl"}, 409, "already_exists")
    auto_e = api.ok("POST", "/v1/stores/src/export", status=201)
    assert auto_e["file"].startswith("src-") and auto_e["file"].endswith(".jsonl")
    i = api.ok("POST", "/v1/stores/imported/import", {"file": "src.jsonl"}, status=201)
    assert i == {"file": "src.jsonl", "store": "imported", "points": 300, "shards": 1}
    for pid in ("p0", "p299"):
        got = api.ok("GET", f"/v1/stores/imported/points/{pid}")
        orig = api.ok("GET", f"/v1/stores/src/points/{pid}")
        assert got["vector"] == orig["vector"] and got["metadata"] == orig["metadata"]
    api.err("POST", "/v1/stores/other/import", {"file": "missing.jsonl"}, 404, "not_found")
    api.err("POST", "/v1/stores/imported/import", {"file": "src.jsonl"}, 409, "already_exists")
    api.err("POST", "/v1/stores/x/import", {"file": "../etc/passwd"}, 400, "invalid_argument")

    assert api.ok("DELETE", "/v1/backups/b1") == {"backup": "b1", "deleted": True}
    api.err("DELETE", "/v1/backups/b1", None, 404, "not_found")
    assert [x["name"] for x in api.ok("GET", "/v1/backups")["backups"]] == [auto["name"]]


def test_errors_are_json_with_matching_statuses(server):
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "s", "dimension": 3}, status=201)
    bad_creates = [
        ({"name": "x", "dimension": 0}, "dimension"),
        ({"name": "x", "dimension": 65537}, "dimension"),
        ({"name": "x", "dimension": 2 ** 40}, "u32"),
        ({"name": "x", "dimension": -1}, "dimension"),
        ({"name": "x", "dimension": 1.5}, "dimension"),
        ({"name": "", "dimension": 3}, "empty"),
        ({"name": "n" * 65, "dimension": 3}, "longer than 64"),
        ({"name": "a/b", "dimension": 3}, "only letters"),
        ({"name": "x", "dimension": 3, "metric": "cosinus"}, "metric"),
        ({"name": "x", "dimension": 3, "shards": 0}, "shards"),
        ({"name": "x", "dimension": 3, "shards": 1025}, "shards"),
        ({"name": "x", "dimension": 3, "replication_factor": 2}, "replication_factor"),
        ({"name": "x", "dimension": 3, "write_consistency": 2}, "write_consistency"),
        ({"name": "x", "dimension": 3, "index": "hnsw", "m": 1}, "m must be"),
        ({"name": "x", "dimension": 3, "ef_search": 0}, "ef_search"),
        ({"name": "x", "dimension": 3, "index": "hnsw", "ef_construction": 4_000_000_000}, "ef_construction"),
        ({"name": "x", "dimension": 3, "colour": "red"}, "unknown field"),
        ({"dimension": 3}, "missing field"),
        ([], "invalid request body"),
    ]
    for body, needle in bad_creates:
        api.err("POST", "/v1/stores", body, 400, "invalid_argument", needle)
    api.err("POST", "/v1/stores", None, 400, "invalid_argument", "JSON", raw="name=x",
            headers={"content-type": "application/x-www-form-urlencoded"})
    api.err("POST", "/v1/stores", None, 400, "invalid_argument", "JSON", raw='{"name": "x", "dimension": 3}')
    api.err("POST", "/v1/stores", None, 400, "invalid_argument", "invalid request body", raw="{not json",
            headers={"content-type": "application/json"})
    api.err("POST", "/v1/stores", None, 400, "invalid_argument", raw="", headers={"content-type": "application/json"})

    search = "/v1/stores/s/search"
    api.err("POST", search, {"vector": [1, 2, 3], "k": 0}, 400, "invalid_argument", "k")
    api.err("POST", search, {"vector": [1, 2, 3], "k": 10001}, 400, "invalid_argument", "k")
    api.err("POST", search, {"vector": [1, 2, 3], "k": 2 ** 40}, 400, "invalid_argument")
    api.err("POST", search, {"vector": [1, 2]}, 400, "invalid_argument", "dimensions")
    api.err("POST", search, {"vector": []}, 400, "invalid_argument")
    api.err("POST", search, {"vector": [1e39, 0, 0]}, 400, "invalid_argument", "finite")
    api.err("POST", search, {"vector": [0, 0, 0]}, 400, "invalid_argument", "zero")
    api.err("POST", search, {"vector": [1, 2, 3], "ef": 0}, 400, "invalid_argument", "ef")
    api.err("POST", search, {"vector": [1, 2, 3], "filter": {"must": [{"key": "a", "nope": 1}]}}, 400,
            "invalid_argument", "filter")
    api.err("POST", search, {"vector": [1, 2, 3], "filter": [1]}, 400, "invalid_argument", "filter")
    api.err("POST", "/v1/stores/none/search", {"vector": [1, 2, 3]}, 404, "not_found", "does not exist")
    api.err("POST", "/v1/stores/bad%20name/search", {"vector": [1, 2, 3]}, 400, "invalid_argument", "store name")
    api.err("POST", "/v1/stores/s/points/get", {"ids": []}, 400, "invalid_argument", "no ids")
    api.err("POST", "/v1/stores/s/points/get", {"ids": [""]}, 400, "invalid_argument", "empty")
    api.err("POST", "/v1/stores/s/points/delete", {"ids": []}, 400, "invalid_argument", "no ids")
    api.err("GET", "/v1/stores/s/points/x", None, 400, "invalid_argument", "query", params={"with_vector": "maybe"})
    api.err("GET", "/v1/stores/s/points/%FF", None, 400, "invalid_argument")
    api.err("GET", "/v1/stores/" + "n" * 65, None, 400, "invalid_argument", "longer than 64")
    api.err("GET", "/v1/backups/.hidden", None, 400, "invalid_argument", "backup name")

    # routes and methods
    api.err("GET", "/v1/nothing", None, 404, "not_found", "no route")
    api.err("GET", "/v1/stores/s/points", None, 405, "method_not_allowed")
    allow = api.last.headers.get("allow", "")
    assert "PUT" in allow, allow
    api.err("PATCH", "/v1/stores", None, 405, "method_not_allowed")
    assert set(api.last.headers["allow"].replace(" ", "").split(",")) >= {"GET", "POST"}
    api.err("DELETE", "/openapi.json", None, 405, "method_not_allowed")

    # a body over the limit (64 MiB) is refused from its Content-Length, before it is sent
    conn = http.client.HTTPConnection(urllib.parse.urlparse(api.url).netloc, timeout=30)
    conn.putrequest("PUT", "/v1/stores/s/points")
    conn.putheader("Content-Type", "application/json")
    conn.putheader("Content-Length", str(65 << 20))
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 413 and json.loads(r.read())["error"]["code"] == "payload_too_large"
    conn.close()
    assert api.ok("GET", "/v1/stores/s")["points"] == 0


def test_a_write_that_fails_validation_changes_nothing(server):
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "s", "dimension": 3, "shards": 3}, status=201)
    api.ok("PUT", "/v1/stores/s/points", {"points": [{"id": "a", "vector": [1, 0, 0], "metadata": {"v": 1}},
                                                      {"id": "b", "vector": [0, 1, 0]}]})
    before = api.ok("POST", "/v1/stores/s/points/get", {"ids": ["a", "b"]})
    bad_batches = [
        ([{"id": "a", "vector": [0, 0, 1], "metadata": {"v": 2}}, {"id": "c", "vector": [1, 2]}], "points[1]"),
        ([{"id": "c", "vector": [1, 1, 1]}, {"id": "a", "vector": [0, 0, 1], "metadata": [1]}], "metadata"),
        ([{"id": "c", "vector": [1, 1, 1]}, {"id": "", "vector": [0, 0, 1]}], "points[1]"),
        ([{"id": "c", "vector": [1, 1, 1]}, {"id": "d", "vector": [0, 0, 0]}], "zero"),
        ([{"id": "c", "vector": [1, 1, 1]}, {"id": "d", "vector": [1, 2, 3], "metadata": {"x": "y" * 300_000}}],
         "metadata"),
        ([{"id": "c", "vector": [1, 1, 1], "extra": True}], "unknown field"),
        ([], "no points"),
    ]
    for batch, needle in bad_batches:
        api.err("PUT", "/v1/stores/s/points", {"points": batch}, 400, "invalid_argument", needle)
    assert api.ok("POST", "/v1/stores/s/points/get", {"ids": ["a", "b", "c", "d"]}) == before
    assert api.ok("GET", "/v1/stores/s")["points"] == 2
    api.err("POST", "/v1/stores", {"name": "t", "dimension": 0}, 400, "invalid_argument")
    api.err("POST", "/v1/backups/none/restore", {"store": "t"}, 404, "not_found")
    assert [s["name"] for s in api.ok("GET", "/v1/stores")["stores"]] == ["s"]


def test_openapi_document_matches_the_routes(server):
    api = Rest(server)
    doc = api.ok("GET", "/openapi.json")
    assert doc["openapi"] == "3.1.0" and doc["info"]["title"] == "rvdb REST API"
    ops = [(m.upper(), p) for p, item in doc["paths"].items() for m in item]
    assert len(ops) == 27, ops
    read_only = {(m, p) for m, p in ops
                 if m == "GET" or p.endswith(("/search", "/points/get", "/points/count", "/points/scroll", "/map"))
                 or p == "/v1/embeddings"}
    assert read_only == {("GET", "/v1/stores"), ("GET", "/v1/stores/{store}"), ("GET", "/v1/stores/{store}/points/{id}"),
                         ("POST", "/v1/stores/{store}/points/get"), ("POST", "/v1/stores/{store}/search"),
                         ("GET", "/v1/backups"), ("GET", "/v1/backups/{backup}"), ("POST", "/v1/embeddings"),
                         ("POST", "/v1/stores/{store}/texts/search"), ("POST", "/v1/stores/{store}/points/count"),
                         ("POST", "/v1/stores/{store}/points/scroll"), ("POST", "/v1/stores/{store}/map"),
                         ("GET", "/v1/cluster")}
    for method, path in ops:
        op = doc["paths"][path][method.lower()]
        # 403 (a read-only key) is documented exactly on the writes
        assert ("403" in op["responses"]) == ((method, path) not in read_only), (method, path)
        concrete = path.replace("{store}", "zz-missing").replace("{id}", "x").replace("{backup}", "zz-missing")
        status, body = api.call(method, concrete, {} if "requestBody" in op else None)
        assert str(status) in op["responses"], (method, path, status, body)
        if status >= 400:
            assert "no route" not in body["error"]["message"] and status != 405, (method, path, body)


def test_map_and_cluster(server):
    """A store's 2-D map is a uniform sample projected on its principal components (two blobs far apart land on
    either side, in proportion), reproducible by seed, filtered, with the projection to place other vectors; the
    cluster view lists the node and every replica."""
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "mapped", "dimension": 8, "metric": "euclidean", "shards": 3}, status=201)
    rng = random.Random(5)
    pts = []
    for i in range(600):
        v = [rng.gauss(0, 0.1) for _ in range(8)]
        v[3] += 10 if i % 2 else -10
        pts.append({"id": f"m{i:04d}", "vector": v, "metadata": {"side": "right" if i % 2 else "left", "i": i}})
    api.ok("PUT", "/v1/stores/mapped/points", {"points": pts})
    m = api.ok("POST", "/v1/stores/mapped/map", {"limit": 200, "seed": 7})
    assert (m["store"], m["metric"], m["total"], m["sampled"], len(m["points"])) == ("mapped", "euclidean", 600, 200, 200)
    ids = [p["id"] for p in m["points"]]
    assert ids == sorted(set(ids)), "distinct, in id order"
    left = [p["x"] for p in m["points"] if p["metadata"]["side"] == "left"]
    right = [p["x"] for p in m["points"] if p["metadata"]["side"] == "right"]
    assert max(left) < min(right) or max(right) < min(left), "the first axis separates the blobs"
    assert 60 < len(left) < 140, "both halves sampled in proportion"
    proj = m["projection"]
    assert proj["method"] == "pca" and not proj["normalized"] and proj["explained_variance_ratio"][0] > 0.95
    by_id = {p["id"]: p["vector"] for p in pts}
    for p in m["points"][:20]:
        v = by_id[p["id"]]
        x = sum((a - b) * c for a, b, c in zip(v, proj["mean"], proj["components"][0]))
        y = sum((a - b) * c for a, b, c in zip(v, proj["mean"], proj["components"][1]))
        assert abs(x - p["x"]) < 1e-3 and abs(y - p["y"]) < 1e-3, "the projection places a vector where the map did"
    assert [p["id"] for p in api.ok("POST", "/v1/stores/mapped/map", {"limit": 200, "seed": 7})["points"]] == ids
    assert [p["id"] for p in api.ok("POST", "/v1/stores/mapped/map", {"limit": 200, "seed": 8})["points"]] != ids
    assert api.ok("POST", "/v1/stores/mapped/map", {"limit": 20000})["sampled"] == 600, "all when fewer than asked"
    only_left = api.ok("POST", "/v1/stores/mapped/map",
                       {"filter": {"must": [{"key": "side", "match": {"value": "left"}}]}, "with_metadata": False})
    assert only_left["total"] == 300 and only_left["sampled"] == 300
    assert all("metadata" not in p and by_id[p["id"]][3] < 0 for p in only_left["points"])
    api.err("POST", "/v1/stores/mapped/map", {"limit": 0}, 400, "invalid_argument", "limit")
    api.err("POST", "/v1/stores/mapped/map", {"limit": 20001}, 400, "invalid_argument", "limit")
    api.err("POST", "/v1/stores/mapped/map", {"limits": 5}, 400, "invalid_argument", "limits")
    api.err("POST", "/v1/stores/nope/map", {}, 404, "not_found", "nope")
    c = api.ok("GET", "/v1/cluster")
    assert [n["state"] for n in c["nodes"]] == ["up"] and c["version"] > 0
    mapped = next(s for s in c["stores"] if s["name"] == "mapped")
    assert [s["shard"] for s in mapped["shards"]] == [0, 1, 2] and mapped["replication_factor"] == 1
    assert all(r == [{"node_id": c["nodes"][0]["node_id"], "state": "up"}]
               for r in (s["replicas"] for s in mapped["shards"]))
    # the console's files are served, with a strict policy, and hold no data (no key needed)
    page = requests.get(api.url + "/console", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert requests.get(api.url + "/console/nope.js", timeout=10).status_code == 404


def test_schemathesis(server, tmp_path):
    """schemathesis generates valid and invalid requests for every operation of /openapi.json (examples, boundary
    values, random data, and stateful sequences that follow the Location headers) and checks every answer."""
    st = shutil.which("st", path=os.path.dirname(sys.executable)) or shutil.which("st")
    if st is None:
        pytest.fail("schemathesis is not installed: pip install -r tests/mcp/requirements.txt")
    api = Rest(server)
    # The resources the document's examples name, so that example requests reach real data.
    api.ok("POST", "/v1/stores", {"name": "docs", "dimension": 4, "metric": "cosine"}, status=201)
    api.ok("PUT", "/v1/stores/docs/points", {"points": [
        {"id": "a", "vector": [0.1, 0.2, 0.3, 0.4], "metadata": {"lang": "en", "year": 2024}},
        {"id": "b", "vector": [0.4, 0.3, 0.2, 0.1], "metadata": {"lang": "de", "year": 2019}}]})
    api.ok("POST", "/v1/stores/docs/backups", {"name": "docs-nightly"}, status=201)
    api.ok("POST", "/v1/stores/docs/export", {"file": "docs.jsonl"}, status=201)
    # The document as served, with one test-only bound: shard counts up to 4, not 1024. Creating a store's
    # column families costs more per shard the more there are (a 1024-shard store takes minutes on 2 cores), and
    # schemathesis tries every maximum; the served limit itself is checked in test_errors_are_json_with_matching_statuses.
    doc = api.ok("GET", "/openapi.json")
    schemas = doc["components"]["schemas"]
    for schema, field in (("CreateStore", "shards"), ("RestoreBackup", "shards")):
        assert schemas[schema]["properties"][field]["maximum"] == 1024
        schemas[schema]["properties"][field]["maximum"] = 4
    (tmp_path / "openapi.json").write_text(json.dumps(doc))
    started = time.monotonic()
    cmd = [st, "run", str(tmp_path / "openapi.json"), "--url", api.url,
           "--checks", "not_a_server_error,status_code_conformance,content_type_conformance,"
                       "response_schema_conformance",
           "--max-examples", os.environ.get("RVDB_ST_EXAMPLES", "50"), "--seed", "1", "--workers", "1",
           "--generation-database", "none", "--request-timeout", "60", "--no-color"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=900)
    elapsed = time.monotonic() - started
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    print(f"schemathesis took {elapsed:.0f} s")
    assert proc.returncode == 0, out[-12000:]
    assert requests.get(api.url + "/healthz", timeout=10).status_code == 200


def test_huge_user_values_are_not_echoed_whole(server):
    """A 1 MB id (or store / backup / file name, or a value in the wrong place) is quoted in errors only in part:
    every message stays under 1 KB."""
    api = Rest(server)
    api.ok("POST", "/v1/stores", {"name": "s", "dimension": 2}, status=201)
    huge = "x" * 1_000_000
    point = {"id": huge, "vector": [1, 0]}
    cases = [
        ("PUT", "/v1/stores/s/points", {"points": [point]}, 400),
        ("PUT", "/v1/stores/s/points", {"points": [{"id": "a", "vector": [1, 0], "metadata": huge}]}, 400),
        ("POST", "/v1/stores/s/points/get", {"ids": [huge]}, 400),
        ("POST", "/v1/stores/s/points/delete", {"ids": [huge]}, 400),
        ("POST", "/v1/stores/s/search", {"vector": [1, 0], "k": huge}, 400),
        ("POST", "/v1/stores/s/search", {"vector": [1, 0], "filter": {"must": [{"key": "a", huge: 1}]}}, 400),
        ("POST", "/v1/stores", {"name": huge, "dimension": 2}, 400),
        ("POST", "/v1/stores", {"name": "t", "dimension": 2, "metric": huge}, 400),
        ("POST", "/v1/stores/s/backups", {"name": huge}, 400),
        ("POST", "/v1/stores/s/export", {"file": huge}, 400),
        ("POST", "/v1/stores/t/import", {"file": huge}, 400),
        ("POST", "/v1/backups/b/restore", {"store": huge}, 400),
    ]
    for method, path, body, status in cases:
        got, data = api.call(method, path, body)
        assert got == status, (method, path, got, str(data)[:300])
        assert len(data["error"]["message"]) < 1000, (method, path, len(data["error"]["message"]))
    assert api.ok("GET", "/v1/stores/s")["points"] == 0
