"""Surface parity: one table of operations × inputs (good ones, and bad ones of every kind) run through MCP (the
official SDK), REST and the CLI against one `rvdb serve`; each row must give the same result data, or the same
error code, on every surface. The export → import row imports exactly the `file` export returned."""
import asyncio
import json

import pytest
import requests
from mcp import Client

from test_cli import cli

P = "p"  # the shared store: dimension 3, euclidean, points a, b, c
POINTS = [{"id": "a", "vector": [0, 0, 0], "metadata": {"n": 0}}, {"id": "b", "vector": [1, 0, 0], "metadata": {"n": 1}},
          {"id": "c", "vector": [2, 0, 0], "metadata": {"n": 2}}]


def mcp_code(result):
    """The error code of a failed tool call: `Invalid input: …` or `Error (<code>): …`."""
    text = result.content[0].text
    if text.startswith("Invalid input:"):
        return "invalid_argument"
    assert text.startswith("Error ("), text
    return text[len("Error ("):text.index(")")]


# Each operation as each surface spells it: (MCP tool, arguments), (REST method, path, body), CLI argv.
def op_search(store, vector, **extra):
    args = {"store": store, "vector": vector, **extra}
    body = {"vector": vector, **extra}
    argv = ["search", store, "--vector", json.dumps(vector)]
    for k, v in extra.items():
        if k == "filter":
            argv += ["--filter", json.dumps(v)]
        elif k in ("k", "ef"):
            argv += [f"--{k}", str(v)]
        else:
            argv = None  # a field the CLI has no flag for
            break
    return ("search_vectors", args), ("POST", f"/v1/stores/{store}/search", body), argv


def op_create(store, dimension, **extra):
    argv = ["create-store", store, "--dimension", str(dimension)]
    for k, v in extra.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    return (("create_store", {"store": store, "dimension": dimension, **extra}),
            ("POST", "/v1/stores", {"name": store, "dimension": dimension, **extra}), argv)


def op_insert(store, points):
    argv = None
    if len(points) == 1 and set(points[0]) <= {"id", "vector", "metadata"} and "vector" in points[0]:
        p = points[0]
        argv = ["insert", store, "--id", str(p["id"]), "--vector", json.dumps(p["vector"])]
        if "metadata" in p:
            argv += ["--metadata", json.dumps(p["metadata"])]
    return ("insert_vectors", {"store": store, "points": points}), ("PUT", f"/v1/stores/{store}/points", {"points": points}), argv


def op_get(store, id):
    return (("get_vector", {"store": store, "id": id}), ("GET", f"/v1/stores/{store}/points/{id}", None),
            ["get", store, id])


def op_describe(store):
    return ("describe_store", {"store": store}), ("GET", f"/v1/stores/{store}", None), ["stats", store]


def op_drop(store):
    return ("delete_store", {"store": store}), ("DELETE", f"/v1/stores/{store}", None), ["drop-store", store]


def op_backup(store, name):
    return (("backup_store", {"store": store, "name": name}), ("POST", f"/v1/stores/{store}/backups", {"name": name}),
            ["backup", store, "--name", name])


def op_restore(backup, store):
    return (("restore_store", {"backup": backup, "store": store}),
            ("POST", f"/v1/backups/{backup}/restore", {"store": store}), ["restore", backup, "--store", store])


def op_export(store, file):
    return (("export_store", {"store": store, "file": file}), ("POST", f"/v1/stores/{store}/export", {"file": file}),
            ["export-store", store, "--file", file])


def op_import(store, file):
    return (("import_store", {"store": store, "file": file}), ("POST", f"/v1/stores/{store}/import", {"file": file}),
            ["import-store", store, "--file", file])


def op_count(store, filter=None):
    args, body, argv = {"store": store}, {}, ["count", store]
    if filter is not None:
        args["filter"] = body["filter"] = filter
        argv += ["--filter", json.dumps(filter)]
    return ("count", args), ("POST", f"/v1/stores/{store}/points/count", body), argv


def op_scroll(store, **extra):
    argv = ["scroll", store]
    for k, v in extra.items():
        argv += [f"--{k}", json.dumps(v) if k == "filter" else str(v)]
    return ("scroll", {"store": store, **extra}), ("POST", f"/v1/stores/{store}/points/scroll", extra), argv


def op_update(store, ids=None, filter=None, set=None, unset=None):
    body = {k: v for k, v in (("ids", ids), ("filter", filter), ("set", set), ("unset", unset)) if v is not None}
    argv = ["update-metadata", store, *(ids or [])]
    if filter is not None:
        argv = None if ids else argv + ["--filter", json.dumps(filter)]  # the CLI refuses both itself
    if argv is not None and set is not None:
        argv += ["--set", json.dumps(set)]
    for k in unset or []:
        argv = argv and argv + ["--unset", k]
    return ("update_metadata", {"store": store, **body}), ("POST", f"/v1/stores/{store}/points/metadata", body), argv


def op_delete_points(store, ids=None, filter=None):
    body = {k: v for k, v in (("ids", ids), ("filter", filter)) if v is not None}
    argv = ["delete", store, *(ids or [])] if filter is None else ["delete", store, "--filter", json.dumps(filter)]
    if ids is None and filter is None:
        argv = None  # the CLI sends {"ids": []}: a different message for the same refusal
    return ("delete_points", {"store": store, **body}), ("POST", f"/v1/stores/{store}/points/delete", body), argv


BAD = [  # (what, operation, expected error code)
    ("wrong dimension", op_search(P, [1, 2]), "invalid_argument"),
    ("a component beyond f32", op_search(P, [1e39, 0, 0]), "invalid_argument"),
    ("unknown store", op_search("nope", [1, 2, 3]), "not_found"),
    ("k = 0", op_search(P, [1, 2, 3], k=0), "invalid_argument"),
    ("huge k", op_search(P, [1, 2, 3], k=10 ** 9), "invalid_argument"),
    ("huge ef", op_search(P, [1, 2, 3], ef=10 ** 9), "invalid_argument"),
    ("bad filter", op_search(P, [1, 2, 3], filter={"must": [{"key": "n", "bogus": 1}]}), "invalid_argument"),
    ("unknown field", op_search(P, [1, 2, 3], limit=3), "invalid_argument"),
    ("duplicate store", op_create(P, 3), "already_exists"),
    ("bad store name", op_create("a b", 3), "invalid_argument"),
    ("dimension 0", op_create("d0", 0), "invalid_argument"),
    ("unknown metric", op_create("m0", 3, metric="bogus"), "invalid_argument"),
    ("shards 0", op_create("s0", 3, shards=0), "invalid_argument"),
    ("replication beyond the nodes", op_create("r2", 3, replication_factor=2), "invalid_argument"),
    ("m out of range on a flat store", op_create("mf", 3, m=1000), "invalid_argument"),
    ("ef_construction beyond the limit", op_create("ec", 3, index="hnsw", ef_construction=10 ** 6), "invalid_argument"),
    ("ef_search 0", op_create("es", 3, ef_search=0), "invalid_argument"),
    ("unknown index", op_create("ui", 3, index="ivf"), "invalid_argument"),
    ("point without a vector", op_insert(P, [{"id": "z"}]), "invalid_argument"),
    ("point of the wrong dimension", op_insert(P, [{"id": "z", "vector": [1, 2]}]), "invalid_argument"),
    ("id too long", op_insert(P, [{"id": "x" * 600, "vector": [1, 2, 3]}]), "invalid_argument"),
    ("metadata not an object", op_insert(P, [{"id": "z", "vector": [1, 2, 3], "metadata": [1]}]), "invalid_argument"),
    ("no points", op_insert(P, []), "invalid_argument"),
    ("get from an unknown store", op_get("nope", "a"), "not_found"),
    ("describe an unknown store", op_describe("nope"), "not_found"),
    ("drop an unknown store", op_drop("nope"), "not_found"),
    ("restore an unknown backup", op_restore("nope", "r"), "not_found"),
    ("restore into an existing store", op_restore("pb", P), "already_exists"),
    ("reserved backup name", op_backup(P, "exports"), "invalid_argument"),
    ("export to a path", op_export(P, "../x.jsonl"), "invalid_argument"),
    ("import a missing file", op_import("imp", "missing.jsonl"), "not_found"),
    ("count in an unknown store", op_count("nope"), "not_found"),
    ("count with a bad filter", op_count(P, {"must": [{"key": "n", "bogus": 1}]}), "invalid_argument"),
    ("scroll with a forged cursor", op_scroll(P, cursor="not-a-cursor"), "invalid_argument"),
    ("scroll with limit 0", op_scroll(P, limit=0), "invalid_argument"),
    ("update that changes nothing", op_update(P, ids=["a"]), "invalid_argument"),
    ("update of the reserved text key", op_update(P, ids=["a"], set={"_text": "x"}), "invalid_argument"),
    ("update by ids and a filter", op_update(P, ids=["a"], filter={"must": []}, set={"x": 1}), "invalid_argument"),
    ("update in an unknown store", op_update("nope", ids=["a"], set={"x": 1}), "not_found"),
    ("delete by neither ids nor filter", op_delete_points(P), "invalid_argument"),
    ("delete with a bad filter", op_delete_points(P, filter={"should": 3}), "invalid_argument"),
]


class Surfaces:
    """Runs one operation on one surface: ("ok", data) or ("error", code)."""

    def __init__(self, server, mcp):
        self.url, self.mcp = server.mcp_url, mcp
        self.base = server.mcp_url.rsplit("/mcp", 1)[0]

    async def run(self, surface, op):
        (tool, args), (method, path, body), argv = op
        if surface == "mcp":
            r = await self.mcp.call_tool(tool, args)
            return ("error", mcp_code(r)) if r.is_error else ("ok", r.structured_content)
        if surface == "rest":
            r = requests.request(method, self.base + path, json=body, timeout=60)
            data = r.json()
            return ("ok", data) if r.ok else ("error", data["error"]["code"])
        if argv is None:
            return None
        code, data = cli(self.url, *argv, ok=False)
        return ("ok", data) if code == 0 else ("error", data["error"]["code"])


def test_every_surface_gives_the_same_answer(server):
    async def go():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            s = Surfaces(server, c)
            assert (await s.run("rest", op_create(P, 3, metric="euclidean")))[0] == "ok"
            assert (await s.run("rest", op_insert(P, POINTS)))[0] == "ok"
            assert (await s.run("rest", op_backup(P, "pb")))[0] == "ok"
            mismatches, checked = [], 0
            for what, op, expected in BAD:
                for surface in ("mcp", "rest", "cli"):
                    got = await s.run(surface, op)
                    if got is None:
                        continue
                    checked += 1
                    if got != ("error", expected):
                        mismatches.append((what, surface, got))
            assert not mismatches, mismatches
            assert checked >= 3 * 15, checked

            # good rows: the same data on every surface
            results = {}
            for surface in ("mcp", "rest", "cli"):
                kind, found = await s.run(surface, op_search(P, [0.9, 0, 0], k=2, filter={"must": [{"key": "n", "range": {"gte": 1}}]}))
                assert kind == "ok", (surface, found)
                results[surface] = [(h["id"], round(h["distance"], 6), h.get("metadata")) for h in found["results"]]
            assert results["mcp"] == results["rest"] == results["cli"] == [("b", 0.1, {"n": 1}), ("c", 1.1, {"n": 2})], results
            stats = {sf: (await s.run(sf, op_describe(P)))[1] for sf in ("mcp", "rest", "cli")}
            keys = ("name", "dimension", "metric", "index", "shards", "points")
            assert len({tuple(st[k] for k in keys) for st in stats.values()}) == 1, stats
            got = (await s.run("mcp", op_get(P, "c")))[1]["point"], (await s.run("rest", op_get(P, "c")))[1]
            assert got[0]["vector"] == got[1]["vector"] == [2, 0, 0] and got[0]["metadata"] == got[1]["metadata"]
            assert (await s.run("cli", op_get(P, "c")))[1]["points"][0]["vector"] == [2, 0, 0]

            # count, scroll (following the cursor), update and delete by filter: the same data on every surface
            for surface in ("mcp", "rest", "cli"):
                kind, counted = await s.run(surface, op_count(P, {"must": [{"key": "n", "range": {"gte": 1}}]}))
                assert (kind, counted["count"]) == ("ok", 2), (surface, counted)
                kind, page = await s.run(surface, op_scroll(P, limit=2))
                assert kind == "ok" and [p["id"] for p in page["points"]] == ["a", "b"], (surface, page)
                assert page["points"][1]["metadata"] == {"n": 1}, page
                kind, rest = await s.run(surface, op_scroll(P, limit=2, cursor=page["next_cursor"]))
                assert kind == "ok" and [p["id"] for p in rest["points"]] == ["c"], (surface, rest)
                assert "next_cursor" not in rest, rest
                kind, updated = await s.run(surface, op_update(P, ids=["a", "zz"], set={"seen": surface}))
                assert (kind, updated["updated"]) == ("ok", 1), (surface, updated)
                seen = {"must": [{"key": "seen", "match": {"value": surface}}]}
                assert (await s.run(surface, op_count(P, seen)))[1]["count"] == 1, surface
            kind, updated = await s.run("rest", op_update(P, filter={"must": [{"key": "n", "range": {"gte": 1}}]},
                                                          unset=["n"], set={"m": 7}))
            assert (kind, updated["updated"]) == ("ok", 2), updated
            _, page = await s.run("rest", op_scroll(P, limit=10))
            assert [p["metadata"] for p in page["points"]] == [{"n": 0, "seen": "cli"}, {"m": 7}, {"m": 7}], page
            # export → import with exactly the file export returned, on each surface; a restore on each
            for surface in ("mcp", "rest", "cli"):
                kind, exported = await s.run(surface, op_export(P, f"e-{surface}.jsonl"))
                assert kind == "ok" and exported["file"] == f"e-{surface}.jsonl", (surface, exported)
                kind, imported = await s.run(surface, op_import(f"i-{surface}", exported["file"]))
                assert kind == "ok" and imported["points"] == 3, (surface, imported)
                kind, restored = await s.run(surface, op_restore("pb", f"r-{surface}"))
                assert kind == "ok" and restored["points"] == 3, (surface, restored)
                # and the copies answer as the original
                kind, found = await s.run("rest", op_search(f"i-{surface}", [0.9, 0, 0], k=3))
                assert [h["id"] for h in found["results"]] == ["b", "a", "c"], found
                # delete by filter on the copy: only the matching points go
                kind, deleted = await s.run(surface, op_delete_points(f"i-{surface}", filter={"must": [{"key": "m", "match": {"value": 7}}]}))
                assert (kind, deleted["deleted"]) == ("ok", 2), (surface, deleted)
                assert (await s.run(surface, op_count(f"i-{surface}")))[1]["count"] == 1, surface
    asyncio.run(go())
