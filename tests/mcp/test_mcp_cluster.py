"""The official Python MCP SDK against a real cluster (index manager, 3 storage nodes, a gateway): the tools work
the same as on `rvdb serve`, and a node killed with SIGKILL costs neither reads nor writes."""
import asyncio
import json
import random
import socket
import time

from mcp import Client


def call_ok(result):
    assert not result.is_error, result.content
    return result.structured_content


def test_cluster_tools_and_a_node_kill(cluster):
    rng = random.Random(11)
    vecs = {f"p{i}": [rng.uniform(-1, 1) for _ in range(8)] for i in range(400)}

    def exact(q, k, ids):
        d = sorted((sum((a - b) ** 2 for a, b in zip(vecs[i], q)) ** 0.5, i) for i in ids)
        return [i for _, i in d[:k]]

    async def go():
        async with Client(cluster.mcp_url, mode="2026-07-28") as c:
            out = call_ok(await c.call_tool("create_store", {"store": "cl", "dimension": 8, "metric": "euclidean",
                                                             "shards": 4, "replication_factor": 2}))
            assert (out["shards"], out["replication_factor"], out["write_consistency"]) == (4, 2, 0)
            items = list(vecs.items())
            call_ok(await c.call_tool("insert_vectors", {"store": "cl", "points": [
                {"id": i, "vector": v, "metadata": {"n": int(i[1:])}} for i, v in items[:200]]}))
            q = [rng.uniform(-1, 1) for _ in range(8)]
            hits = call_ok(await c.call_tool("search_vectors", {"store": "cl", "vector": q, "k": 5}))["results"]
            assert [h["id"] for h in hits] == exact(q, 5, [i for i, _ in items[:200]])

            victim = cluster.nodes[0]
            host, port = victim.fields["grpc"].removeprefix("http://").rsplit(":", 1)
            socket.create_connection((host, int(port)), timeout=2).close()  # it serves before the kill
            victim.kill()  # SIGKILL, no warning
            # the replica is really gone: the process has exited and nothing listens on its port any more
            assert victim.proc.poll() is not None
            try:
                socket.create_connection((host, int(port)), timeout=2).close()
                raise AssertionError(f"node {victim.fields['grpc']} still accepts connections after SIGKILL")
            except ConnectionRefusedError:
                pass
            # reads fail over at once; writes succeed once the manager has marked the node down (≤ 2 s)
            hits = call_ok(await c.call_tool("search_vectors", {"store": "cl", "vector": q, "k": 5}))["results"]
            assert [h["id"] for h in hits] == exact(q, 5, [i for i, _ in items[:200]])
            deadline = time.time() + 20
            while True:
                r = await c.call_tool("insert_vectors", {"store": "cl", "points": [
                    {"id": i, "vector": v} for i, v in items[200:]]})
                if not r.is_error:
                    break
                assert time.time() < deadline, r.content
                await asyncio.sleep(0.2)
            stats = call_ok(await c.call_tool("describe_store", {"store": "cl"}))
            assert stats["points"] == 400
            got = call_ok(await c.call_tool("get_vector", {"store": "cl", "id": "p7"}))
            assert got["found"] and got["point"]["metadata"] == {"n": 7}
            hits = call_ok(await c.call_tool("search_vectors", {"store": "cl", "vector": q, "k": 10}))["results"]
            assert [h["id"] for h in hits] == exact(q, 10, list(vecs))
            # a backup of the store while a node is down, restored into a new store on the cluster
            b = call_ok(await c.call_tool("backup_store", {"store": "cl"}))
            call_ok(await c.call_tool("restore_store", {"backup": b["name"], "store": "cl_restored"}))
            stats = call_ok(await c.call_tool("describe_store", {"store": "cl_restored"}))
            assert stats["points"] == 400
            listed = call_ok(await c.call_tool("list_stores", {}))
            assert sorted(s["name"] if isinstance(s, dict) else s for s in listed["stores"]) == ["cl", "cl_restored"]
    asyncio.run(go())
