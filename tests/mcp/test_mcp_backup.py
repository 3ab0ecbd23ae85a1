"""Backups, restores, JSON export / import and scheduled backups through the MCP tools, with real processes."""
import asyncio
import glob
import os
import random
import time

from mcp import Client

from test_mcp_gateway import call_err, call_ok


def run(coro):
    return asyncio.run(coro)


def points(n, dim, seed, prefix="p"):
    rng = random.Random(seed)
    return [{"id": f"{prefix}{i}", "vector": [rng.uniform(-1, 1) for _ in range(dim)], "metadata": {"i": i, "tag": "x" * (i % 5)}}
            for i in range(n)]


def test_backup_restore_export_import_round_trip(server):
    async def go():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            call_ok(await c.call_tool("create_store", {"store": "src", "dimension": 6, "metric": "manhattan", "shards": 2}))
            pts = points(1500, 6, 1)
            call_ok(await c.call_tool("insert_vectors", {"store": "src", "points": pts}))
            progress = []

            async def on_progress(p, total, message):
                progress.append(p)
            b = call_ok(await c.call_tool("backup_store", {"store": "src", "name": "b1"}, progress_callback=on_progress))
            assert b["name"] == "b1" and b["store"] == "src" and b["points"] == 1500 and b["bytes"] > 0
            assert progress and progress[-1] == 1500
            # writes after the backup are not in it
            call_ok(await c.call_tool("insert_vectors", {"store": "src", "points": points(100, 6, 2, "late")}))
            listed = call_ok(await c.call_tool("list_backups", {}))["backups"]
            assert [x["name"] for x in listed] == ["b1"] and listed[0]["points"] == 1500
            assert call_ok(await c.call_tool("list_backups", {"store": "other"}))["backups"] == []

            r = call_ok(await c.call_tool("restore_store", {"backup": "b1", "store": "copy", "shards": 3}))
            assert r == {"backup": "b1", "store": "copy", "points": 1500, "shards": 3}
            d = call_ok(await c.call_tool("describe_store", {"store": "copy"}))
            assert d["points"] == 1500 and d["metric"] == "manhattan" and d["shards"] == 3
            q = [0.1, -0.2, 0.3, 0.0, 0.5, -0.5]
            a = call_ok(await c.call_tool("search_vectors", {"store": "copy", "vector": q, "k": 10}))["results"]
            want = sorted(pts, key=lambda p: (sum(abs(x - y) for x, y in zip(q, p["vector"])), p["id"]))[:10]
            assert [x["id"] for x in a] == [p["id"] for p in want]
            for p in (pts[0], pts[777], pts[1499]):
                got = call_ok(await c.call_tool("get_vector", {"store": "copy", "id": p["id"]}))["point"]
                orig = call_ok(await c.call_tool("get_vector", {"store": "src", "id": p["id"]}))["point"]
                assert got["vector"] == orig["vector"] and got["metadata"] == p["metadata"]
            assert call_ok(await c.call_tool("get_vector", {"store": "copy", "id": "late0"}))["found"] is False

            e = call_ok(await c.call_tool("export_store", {"store": "src", "file": "src.jsonl"}))
            assert e["points"] == 1600 and e["file"] == "src.jsonl"
            assert e["path"] == os.path.join(server.backup_dir, "exports", "src.jsonl")
            # exactly the file value export returned is what import takes
            i = call_ok(await c.call_tool("import_store", {"file": e["file"], "store": "imported"}))
            assert i["points"] == 1600
            for pid in ("p3", "late7"):
                got = call_ok(await c.call_tool("get_vector", {"store": "imported", "id": pid}))["point"]
                orig = call_ok(await c.call_tool("get_vector", {"store": "src", "id": pid}))["point"]
                assert got["vector"] == orig["vector"], "vectors must round-trip exactly through JSON"
                assert got["metadata"] == orig["metadata"]
    run(go())


def test_backup_errors_and_damaged_backups_restore_nothing(server):
    async def go():
        async with Client(server.mcp_url, mode="legacy") as c:
            call_ok(await c.call_tool("create_store", {"store": "s", "dimension": 3}))
            call_ok(await c.call_tool("insert_vectors", {"store": "s", "points": points(300, 3, 3)}))
            call_ok(await c.call_tool("backup_store", {"store": "s", "name": "good"}))
            call_err(await c.call_tool("backup_store", {"store": "s", "name": "good"}), "already exists")
            call_err(await c.call_tool("backup_store", {"store": "s", "name": "../escape"}), "invalid backup name")
            # the export directory's name is reserved: such a backup would never be listed
            call_err(await c.call_tool("backup_store", {"store": "s", "name": "exports"}), "invalid backup name", "reserved")
            call_err(await c.call_tool("backup_store", {"store": "nope"}), "does not exist")
            call_err(await c.call_tool("restore_store", {"backup": "missing", "store": "r"}), "does not exist", "good")
            call_err(await c.call_tool("restore_store", {"backup": "good", "store": "s"}), "already exists")

            # a flipped byte: the checksum catches it, and no store is created
            call_ok(await c.call_tool("backup_store", {"store": "s", "name": "flipped"}))
            f = glob.glob(os.path.join(server.backup_dir, "flipped", "points-*.bin.zst"))[0]
            data = bytearray(open(f, "rb").read())
            data[len(data) // 2] ^= 0xFF
            open(f, "wb").write(bytes(data))
            call_err(await c.call_tool("restore_store", {"backup": "flipped", "store": "r1"}), "corrupted", "checksum")
            call_err(await c.call_tool("describe_store", {"store": "r1"}), "does not exist")
            # a truncated file
            call_ok(await c.call_tool("backup_store", {"store": "s", "name": "cut"}))
            f = glob.glob(os.path.join(server.backup_dir, "cut", "points-*.bin.zst"))[0]
            data = open(f, "rb").read()
            open(f, "wb").write(data[: len(data) // 3])
            call_err(await c.call_tool("restore_store", {"backup": "cut", "store": "r2"}), "corrupted", "truncated")
            call_err(await c.call_tool("describe_store", {"store": "r2"}), "does not exist")
            # the good one still restores
            assert call_ok(await c.call_tool("restore_store", {"backup": "good", "store": "r3"}))["points"] == 300

            # an export with a bad line: the import names the line and leaves no store behind
            call_ok(await c.call_tool("export_store", {"store": "s", "file": "s.jsonl"}))
            path = os.path.join(server.backup_dir, "exports", "s.jsonl")
            lines = open(path).read().splitlines()
            lines[10] = '{"id": "broken", "vector": [1.0, 2.0]}'
            open(os.path.join(server.backup_dir, "exports", "bad.jsonl"), "w").write("\n".join(lines) + "\n")
            call_err(await c.call_tool("import_store", {"file": "bad.jsonl", "store": "i1"}), "expects 3")
            call_err(await c.call_tool("describe_store", {"store": "i1"}), "does not exist")
            call_err(await c.call_tool("import_store", {"file": "absent.jsonl", "store": "i2"}), "not found")
            call_err(await c.call_tool("import_store", {"file": "../../etc/passwd", "store": "i3"}), "invalid export file name")
            # the source store is untouched by all of this
            assert call_ok(await c.call_tool("describe_store", {"store": "s"}))["points"] == 300
    run(go())


def test_same_name_backups_and_exports_at_once_one_wins(server):
    """Two backup_store (or export_store) calls with one name while writes go on: exactly one succeeds, the other
    gets already_exists (409 on REST), and the listed backup restores."""
    from test_rest import Rest

    async def go():
        async with Client(server.mcp_url, mode="legacy") as c1, Client(server.mcp_url, mode="legacy") as c2:
            call_ok(await c1.call_tool("create_store", {"store": "w", "dimension": 8, "shards": 2}))
            call_ok(await c1.call_tool("insert_vectors", {"store": "w", "points": points(3000, 8, 5)}))

            async def writes():
                for i in range(20):
                    call_ok(await c1.call_tool("insert_vectors", {"store": "w", "points": points(50, 8, 100 + i, f"w{i}-")}))
            for trial in range(4):
                writer = asyncio.create_task(writes())
                b = await asyncio.gather(*(c.call_tool("backup_store", {"store": "w", "name": f"bk{trial}"}) for c in (c1, c2)))
                e = await asyncio.gather(*(c.call_tool("export_store", {"store": "w", "file": f"ex{trial}.jsonl"}) for c in (c1, c2)))
                await writer
                for results in (b, e):
                    assert sorted(r.is_error for r in results) == [False, True], [r.content for r in results]
                    call_err(next(r for r in results if r.is_error), "already exists")
                r = call_ok(await c1.call_tool("restore_store", {"backup": f"bk{trial}", "store": f"r{trial}"}))
                assert r["points"] >= 3000
                i = call_ok(await c1.call_tool("import_store", {"file": f"ex{trial}.jsonl", "store": f"i{trial}"}))
                assert i["points"] >= 3000
            listed = sorted(x["name"] for x in call_ok(await c1.call_tool("list_backups", {}))["backups"])
            assert listed == ["bk0", "bk1", "bk2", "bk3"]
            assert sorted(os.listdir(server.backup_dir)) == ["bk0", "bk1", "bk2", "bk3", "exports"], "no temporaries"
    run(go())

    async def rest_pair(path, body):
        return await asyncio.gather(*(asyncio.to_thread(Rest(server).call, "POST", path, body) for _ in range(2)))
    for path, body in (("/v1/stores/w/backups", {"name": "rest-bk"}), ("/v1/stores/w/export", {"file": "rest.jsonl"})):
        answers = run(rest_pair(path, body))
        assert sorted(status for status, _ in answers) == [201, 409], answers
        assert [d["error"]["code"] for status, d in answers if status == 409] == ["already_exists"]


def test_scheduled_backups_keep_the_newest(make_server):
    s = make_server(env={"RVDB_AUTO_BACKUP_ENABLED": "true", "RVDB_AUTO_BACKUP_INTERVAL": "1000",
                         "RVDB_AUTO_BACKUP_RETENTION": "2"})

    async def go():
        async with Client(s.mcp_url, mode="2026-07-28") as c:
            call_ok(await c.call_tool("create_store", {"store": "auto", "dimension": 2}))
            call_ok(await c.call_tool("insert_vector", {"store": "auto", "id": "a", "vector": [1, 2]}))
            call_ok(await c.call_tool("backup_store", {"store": "auto", "name": "manual"}))
            deadline = time.time() + 20
            while True:
                await asyncio.sleep(0.5)
                names = [b["name"] for b in call_ok(await c.call_tool("list_backups", {"store": "auto"}))["backups"]]
                autos = [n for n in names if n.startswith("auto-auto-")]
                if len(autos) == 2 and time.time() > deadline - 15:
                    break
                assert time.time() < deadline, names
            await asyncio.sleep(1.5)
            names = [b["name"] for b in call_ok(await c.call_tool("list_backups", {"store": "auto"}))["backups"]]
            assert len([n for n in names if n.startswith("auto-auto-")]) == 2, names
            assert "manual" in names
            r = call_ok(await c.call_tool("restore_store", {"backup": [n for n in names if n.startswith("auto-")][0],
                                                              "store": "from_auto"}))
            assert r["points"] == 1
    run(go())
