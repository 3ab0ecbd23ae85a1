"""docker compose, for real: the top-level docker-compose.yml (1 manager, 3 nodes, 1 gateway) on the locally built
image, driven by the official Python MCP SDK. A node is killed (`docker-compose kill`), another is cut off the
network (`docker network disconnect`) and reconnected: reads and writes go on, and the cut-off node catches up
until its replicas equal their peers byte for byte.

Needs a Docker engine and the image: tests/run.sh builds it with deploy/build-image.sh and sets RVDB_COMPOSE_IMAGE;
without a Docker engine this test is skipped and run.sh says so loudly."""
import asyncio
import json
import os
import pathlib
import random
import shutil
import socket
import subprocess
import time

import pytest
from mcp import Client

ROOT = pathlib.Path(__file__).resolve().parents[2]
IMAGE = os.environ.get("RVDB_COMPOSE_IMAGE")
PROJECT = "rvdbit"

pytestmark = pytest.mark.skipif(not IMAGE, reason="RVDB_COMPOSE_IMAGE unset: no Docker engine (see tests/run.sh)")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


COMPOSE = ["docker-compose"] if shutil.which("docker-compose") else ["docker", "compose"]


def compose(*args, env, check=True):
    cmd = [*COMPOSE, "-p", PROJECT, "-f", str(ROOT / "docker-compose.yml"), *args]
    return subprocess.run(cmd, env=env, check=check, capture_output=True, text=True)


def sh(*args, check=True):
    return subprocess.run(list(args), check=check, capture_output=True, text=True)


def container(service):
    """The container of a service, found by compose's labels (v1 and v2 name containers differently)."""
    r = sh("docker", "ps", "-aq", "--filter", f"label=com.docker.compose.project={PROJECT}",
           "--filter", f"label=com.docker.compose.service={service}")
    return r.stdout.split()[0]


def health(service):
    r = sh("docker", "inspect", "-f", "{{.State.Health.Status}}", container(service), check=False)
    return r.stdout.strip()


def status():
    r = sh("docker", "exec", container("manager"), "/usr/local/bin/rvdb", "cluster-status",
           "--manager", "http://127.0.0.1:50060", "--digests", "cl")
    return json.loads(r.stdout)


def wait_node(node_id, state, within=90):
    deadline = time.time() + within
    while True:
        s = status()
        if any(n["node_id"] == node_id and n["state"] == state for n in s["nodes"]):
            return
        assert time.time() < deadline, f"{node_id} never {state}: {s['nodes']}"
        time.sleep(0.5)


def call_ok(result):
    assert not result.is_error, result.content
    return result.structured_content


async def retry(c, tool, args, within=60):
    """A write that may fail while the cluster notices a lost node; it must succeed within `within` s."""
    deadline = time.time() + within
    while True:
        r = await c.call_tool(tool, args)
        if not r.is_error:
            return r.structured_content
        assert time.time() < deadline, r.content
        await asyncio.sleep(0.5)


def test_compose_cluster_survives_kill_and_partition():
    port = free_port()
    env = dict(os.environ, RVDB_IMAGE=IMAGE, RVDB_MCP_PUBLISH=str(port), RVDB_LOG="warn")
    compose("down", "-v", env=env, check=False)
    started = time.time()
    compose("up", "-d", "--no-build", env=env)
    try:
        services = ["manager", "node1", "node2", "node3", "gateway"]
        deadline = time.time() + 120
        while not all(health(s) == "healthy" for s in services):
            assert time.time() < deadline, {s: health(s) for s in services}
            time.sleep(0.5)
        print(f"\ncompose: up to all healthy in {time.time() - started:.1f} s")
        rng = random.Random(5)
        vecs = {f"p{i}": [rng.uniform(-1, 1) for _ in range(8)] for i in range(900)}
        ids = list(vecs)

        def exact(q, k, among):
            d = sorted((sum((a - b) ** 2 for a, b in zip(vecs[i], q)) ** 0.5, i) for i in among)
            return [i for _, i in d[:k]]

        def batch(lo, hi):
            return {"store": "cl", "points": [{"id": i, "vector": vecs[i], "metadata": {"n": int(i[1:])}}
                                              for i in ids[lo:hi]]}

        async def go():
            url = f"http://127.0.0.1:{port}/mcp"
            async with Client(url, mode="2026-07-28") as c:
                call_ok(await c.call_tool("create_store", {"store": "cl", "dimension": 8, "metric": "euclidean",
                                                           "shards": 3, "replication_factor": 2}))
                call_ok(await c.call_tool("insert_vectors", batch(0, 300)))
                q = [rng.uniform(-1, 1) for _ in range(8)]
                hits = call_ok(await c.call_tool("search_vectors", {"store": "cl", "vector": q, "k": 5}))
                assert [h["id"] for h in hits["results"]] == exact(q, 5, ids[:300])
                b = call_ok(await c.call_tool("backup_store", {"store": "cl"}))
                call_ok(await c.call_tool("restore_store", {"backup": b["name"], "store": "cl_copy"}))
                assert call_ok(await c.call_tool("describe_store", {"store": "cl_copy"}))["points"] == 300

                # a node killed: searches answer at once, writes within the node timeout
                compose("kill", "node2", env=env)
                hits = call_ok(await c.call_tool("search_vectors", {"store": "cl", "vector": q, "k": 5}))
                assert [h["id"] for h in hits["results"]] == exact(q, 5, ids[:300])
                await retry(c, "insert_vectors", batch(300, 500))
                assert call_ok(await c.call_tool("describe_store", {"store": "cl"}))["points"] == 500
                restarted = time.time()
                compose("start", "node2", env=env)
                wait_node("node2", "up")
                print(f"compose: node2 restarted -> caught up and UP in {time.time() - restarted:.1f} s")

                # a node cut off the network and reconnected: it catches up with what it missed
                net = f"{PROJECT}_default"
                sh("docker", "network", "disconnect", net, container("node3"))
                await retry(c, "insert_vectors", batch(500, 900))
                wait_node("node3", "down")
                await retry(c, "delete_vector", {"store": "cl", "id": "p1"})
                sh("docker", "network", "connect", "--alias", "node3", net, container("node3"))
                reconnected = time.time()
                wait_node("node3", "up")
                print(f"compose: node3 reconnected -> caught up and UP in {time.time() - reconnected:.1f} s")
                s = status()
                shards = next(x for x in s["stores"] if x["name"] == "cl")["shards"]
                for shard in shards:
                    digests = {(r.get("sha256"), r.get("records")) for r in shard["replicas"]}
                    assert len(digests) == 1 and None not in next(iter(digests)), shard
                assert sum(sh_["replicas"][0]["records"] for sh_ in shards) == 900  # 899 points + 1 tombstone
                hits = call_ok(await c.call_tool("search_vectors", {"store": "cl", "vector": q, "k": 10}))
                assert [h["id"] for h in hits["results"]] == exact(q, 10, [i for i in ids if i != "p1"])
        asyncio.run(go())
    finally:
        logs = compose("logs", "--no-color", "--tail", "30", env=env, check=False).stdout
        compose("down", "-v", env=env, check=False)
        print(logs[-4000:])
