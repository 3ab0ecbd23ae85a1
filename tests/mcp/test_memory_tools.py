"""The memory tools through the official MCP SDK against `rvdb serve`, on real sentences (man pages, as
bench/corpus.py extracts them) in a store with 3 shards: count (with and without a filter), scroll page by page
with the stateless cursor (every point exactly once, in id order; a cursor still works after a restart),
update_metadata by ids and by filter (vectors and texts kept), delete_points by ids and by filter, and
score_threshold on search_text and search_vectors; every answer checked against what the test itself stored."""
import asyncio
import math

from mcp import Client

from test_mcp_gateway import call_err, call_ok
from test_text_memory import sentences

N = 300
TOPICS = ("net", "disk", "user")


def doc(i, text):
    return {"text": text, "id": f"d{i:04d}", "metadata": {"n": i, "topic": TOPICS[i % 3], "even": i % 2 == 0}}


async def scroll_all(c, store, limit, **extra):
    """Every page of a scroll, following next_cursor; the pages' points and the number of calls."""
    points, cursor, calls = [], None, 0
    while True:
        args = {"store": store, "limit": limit, **extra}
        if cursor:
            args["cursor"] = cursor
        page = call_ok(await c.call_tool("scroll", args))
        calls += 1
        assert len(page["points"]) <= limit
        points += page["points"]
        cursor = page.get("next_cursor")
        if not cursor:
            return points, calls
        assert calls <= N + 1, "the cursor must advance"


def test_count_scroll_update_delete_on_real_sentences(make_server):
    texts = sentences(N)
    server = make_server()

    async def go():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            call_ok(await c.call_tool("create_store", {"store": "notes", "embedding": {}, "shards": 3}))
            out = call_ok(await c.call_tool("insert_texts", {"store": "notes",
                                                             "documents": [doc(i, t) for i, t in enumerate(texts)]}))
            assert out["inserted"] == N
            ids = sorted(f"d{i:04d}" for i in range(N))

            # count: all, and by filter (exactly what was stored)
            assert call_ok(await c.call_tool("count", {"store": "notes"}))["count"] == N
            by_topic = {"must": [{"key": "topic", "match": {"value": "disk"}}]}
            assert call_ok(await c.call_tool("count", {"store": "notes", "filter": by_topic}))["count"] == N // 3
            ranged = {"must": [{"key": "n", "range": {"gte": 10, "lt": 50}}], "must_not": [{"key": "even", "match": {"value": True}}]}
            assert call_ok(await c.call_tool("count", {"store": "notes", "filter": ranged}))["count"] == 20

            # scroll: every point once, in id order, across the 3 shards, with texts in the metadata
            points, calls = await scroll_all(c, "notes", 17)
            assert [p["id"] for p in points] == ids
            assert calls == math.ceil(N / 17)
            assert all(p["metadata"]["_text"] == texts[p["metadata"]["n"]] for p in points)
            assert all("vector" not in p for p in points)
            disk, _ = await scroll_all(c, "notes", 7, filter=by_topic, with_metadata=False)
            assert [p["id"] for p in disk] == [f"d{i:04d}" for i in range(N) if i % 3 == 1]
            page = call_ok(await c.call_tool("scroll", {"store": "notes", "limit": 2, "with_vector": True}))
            assert len(page["points"][0]["vector"]) == 384
            call_err(await c.call_tool("scroll", {"store": "notes", "cursor": "nonsense"}), "cursor")
            call_err(await c.call_tool("scroll", {"store": "notes", "limit": 0}), "limit")

            # update_metadata by ids: keys set and removed, the rest (text, vector) kept
            before = call_ok(await c.call_tool("get_vector", {"store": "notes", "id": "d0004"}))["point"]
            up = call_ok(await c.call_tool("update_metadata", {"store": "notes", "ids": ["d0004", "d0005", "nope"],
                                                               "set": {"status": "done", "topic": "moved"}, "unset": ["even"]}))
            assert up["updated"] == 2
            after = call_ok(await c.call_tool("get_vector", {"store": "notes", "id": "d0004"}))["point"]
            assert after["vector"] == before["vector"]
            assert after["metadata"] == {"n": 4, "topic": "moved", "status": "done", "_text": texts[4]}
            assert after["version"] > before["version"]
            # the text is still found by its words, with its new metadata
            hits = call_ok(await c.call_tool("search_text", {"store": "notes", "query": texts[4], "k": 1}))["results"]
            assert hits[0]["id"] == "d0004" and hits[0]["metadata"]["status"] == "done", hits
            # by filter: every matching point, and only those (d0004 is no longer on "disk": it moved)
            disk_now = [i for i in range(N) if i % 3 == 1 and i != 4]
            up = call_ok(await c.call_tool("update_metadata", {"store": "notes", "filter": by_topic, "set": {"archived": True}}))
            assert up["updated"] == len(disk_now)
            archived = {"must": [{"key": "archived", "match": {"value": True}}]}
            assert call_ok(await c.call_tool("count", {"store": "notes", "filter": archived}))["count"] == len(disk_now)
            # refusals name the field and change nothing
            call_err(await c.call_tool("update_metadata", {"store": "notes", "ids": ["d0001"], "set": {"_text": "x"}}), "_text")
            call_err(await c.call_tool("update_metadata", {"store": "notes", "ids": ["d0001"]}), "nothing to update")
            call_err(await c.call_tool("update_metadata", {"store": "notes", "ids": ["d0001"], "set": [1]}), "set")
            call_err(await c.call_tool("update_metadata", {"store": "notes", "ids": ["d0001"], "filter": by_topic,
                                                           "set": {"a": 1}}), "not both")
            call_err(await c.call_tool("update_metadata", {"store": "notes", "ids": ["d0001"],
                                                           "set": {"big": "x" * 300_000}}), "more than")
            d1 = call_ok(await c.call_tool("get_vector", {"store": "notes", "id": "d0001"}))["point"]
            assert d1["metadata"] == {"n": 1, "topic": "disk", "even": False, "archived": True, "_text": texts[1]}

            # delete_points: by ids, then by filter
            gone = call_ok(await c.call_tool("delete_points", {"store": "notes", "ids": ["d0000", "d0003", "nope"]}))
            assert gone["deleted"] == 2
            gone = call_ok(await c.call_tool("delete_points", {"store": "notes", "filter": archived}))
            assert gone["deleted"] == len(disk_now)
            left = [i for i in range(N) if i not in disk_now and i not in (0, 3)]
            assert call_ok(await c.call_tool("count", {"store": "notes"}))["count"] == len(left)
            points, _ = await scroll_all(c, "notes", 50, with_metadata=False)
            assert [p["id"] for p in points] == [f"d{i:04d}" for i in left]
            hits = call_ok(await c.call_tool("search_text", {"store": "notes", "query": texts[1], "k": 10}))["results"]
            assert all(h["id"] not in ("d0001", "d0000") for h in hits)
            call_err(await c.call_tool("delete_points", {"store": "notes"}), "ids")

            # score_threshold: only hits that close, and the same ones as without it (a prefix of the ranking)
            full = call_ok(await c.call_tool("search_text", {"store": "notes", "query": texts[5], "k": 20}))["results"]
            assert full[3]["distance"] < full[4]["distance"], full[:5]
            cut = (full[3]["distance"] + full[4]["distance"]) / 2  # between two hits: no rounding decides
            near = call_ok(await c.call_tool("search_text", {"store": "notes", "query": texts[5], "k": 20,
                                                             "score_threshold": cut}))["results"]
            assert [h["id"] for h in near] == [h["id"] for h in full[:4]], (near, full[:5])
            none = call_ok(await c.call_tool("search_text", {"store": "notes", "query": texts[5], "score_threshold": -1}))
            assert none["results"] == []
            vec = call_ok(await c.call_tool("get_vector", {"store": "notes", "id": "d0005"}))["point"]["vector"]
            vhits = call_ok(await c.call_tool("search_vectors", {"store": "notes", "vector": vec, "k": 20,
                                                                 "score_threshold": cut}))["results"]
            assert [h["id"] for h in vhits] == [h["id"] for h in near]
    asyncio.run(go())

    # a cursor is a position, not server state: it works after a restart
    async def first_page():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            return call_ok(await c.call_tool("scroll", {"store": "notes", "limit": 5}))

    page = asyncio.run(first_page())
    server.stop()
    server.start()

    async def next_page():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            return call_ok(await c.call_tool("scroll", {"store": "notes", "limit": 5, "cursor": page["next_cursor"]}))

    after = asyncio.run(next_page())
    assert after["points"] and after["points"][0]["id"] > page["points"][-1]["id"]
