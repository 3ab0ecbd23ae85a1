"""The MCP gateway with the official Python MCP SDK as the client: every tool, every error class, both protocol
eras (2025-11-25 with initialize + sessions, 2026-07-28 stateless), stdio, auth and Origin checks."""
import asyncio
import json
import math
import os
import queue
import random
import subprocess
import threading

import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from conftest import rvdb_bin

MODES = ["legacy", "2026-07-28"]  # legacy = initialize handshake, negotiates 2025-11-25

EXPECTED_TOOLS = ["create_store", "insert_texts", "search_text", "update_metadata", "delete_points", "count", "scroll",
                  "insert_vector", "search_vectors", "sync_store", "backup_store", "restore_store",
                  "list_backups", "list_stores", "describe_store", "delete_store", "get_vector", "delete_vector",
                  "insert_vectors", "export_store", "import_store"]


def run(coro):
    return asyncio.run(coro)


def call_ok(result):
    assert not result.is_error, result.content
    # structured content and its JSON copy in the text content agree
    assert json.loads(result.content[0].text) == result.structured_content
    return result.structured_content


def call_err(result, *needles):
    assert result.is_error, result.structured_content
    text = result.content[0].text
    for n in needles:
        assert n.lower() in text.lower(), f"{n!r} not in {text!r}"
    return text


@pytest.mark.parametrize("mode", MODES)
def test_tool_catalogue(server, mode):
    async def go():
        async with Client(server.mcp_url, mode=mode) as c:
            tools = (await c.list_tools()).tools
            assert [t.name for t in tools] == EXPECTED_TOOLS
            by = {t.name: t for t in tools}
            for t in tools:
                assert t.title and len(t.description) > 40, t.name
                assert t.input_schema["type"] == "object"
                assert t.output_schema["type"] == "object"
                assert t.annotations is not None
            assert by["search_vectors"].annotations.read_only_hint is True
            assert by["list_stores"].annotations.read_only_hint is True
            assert by["delete_store"].annotations.destructive_hint is True
            assert by["create_store"].annotations.destructive_hint is False
            assert by["insert_vector"].annotations.idempotent_hint is True
            assert set(by["insert_vector"].input_schema["required"]) == {"store", "id", "vector"}
    run(go())


@pytest.mark.parametrize("mode", MODES)
def test_every_tool_end_to_end(server, mode):
    store = "docs_" + mode.replace("-", "_")
    rng = random.Random(7)

    async def go():
        async with Client(server.mcp_url, mode=mode) as c:
            out = call_ok(await c.call_tool("create_store", {"store": store, "dimension": 8, "metric": "euclidean"}))
            assert out == {"store": store, "dimension": 8, "metric": "euclidean", "shards": 1, "replication_factor": 1,
                           "write_consistency": 0, "index": "flat", "quantization": "none", "m": 16,
                           "ef_construction": 200, "ef_search": 64, "text_index": {"k1": 1.2, "b": 0.75}}
            vecs = {f"p{i}": [rng.uniform(-1, 1) for _ in range(8)] for i in range(300)}
            out = call_ok(await c.call_tool("insert_vector", {"store": store, "id": "p0", "vector": vecs["p0"],
                                                               "metadata": {"title": "first", "n": 0}}))
            assert out == {"store": store, "id": "p0", "inserted": True}
            progress = []

            async def on_progress(p, total, message):
                progress.append((p, total))
            points = [{"id": k, "vector": v, "metadata": {"n": int(k[1:])}} for k, v in vecs.items() if k != "p0"]
            out = call_ok(await c.call_tool("insert_vectors", {"store": store, "points": points},
                                            progress_callback=on_progress))
            assert out == {"store": store, "inserted": 299, "stale": 0}
            assert progress and progress[-1] == (299, 299)

            q = [rng.uniform(-1, 1) for _ in range(8)]
            out = call_ok(await c.call_tool("search_vectors", {"store": store, "vector": q, "k": 5}))
            want = sorted(vecs, key=lambda k: (math.dist(q, vecs[k]), k))[:5]
            assert [r["id"] for r in out["results"]] == want
            assert abs(out["results"][0]["distance"] - math.dist(q, vecs[want[0]])) < 1e-4
            assert out["results"][0]["metadata"]["n"] == int(want[0][1:])
            out = call_ok(await c.call_tool("search_vectors", {"store": store, "vector": q, "k": 1, "with_vector": True,
                                                                "with_metadata": False}))
            assert "metadata" not in out["results"][0] and len(out["results"][0]["vector"]) == 8

            out = call_ok(await c.call_tool("get_vector", {"store": store, "id": "p0"}))
            assert out["found"] and out["point"]["metadata"] == {"title": "first", "n": 0}
            assert out["point"]["vector"] == pytest.approx(vecs["p0"], abs=1e-6)
            out = call_ok(await c.call_tool("get_vector", {"store": store, "id": "missing"}))
            assert out == {"store": store, "found": False}

            out = call_ok(await c.call_tool("describe_store", {"store": store}))
            assert out["points"] == 300 and out["dimension"] == 8 and out["metric"] == "euclidean"
            out = call_ok(await c.call_tool("list_stores", {}))
            assert store in [s["name"] for s in out["stores"]]
            assert call_ok(await c.call_tool("sync_store", {"store": store})) == {"store": store, "synced": True}

            assert call_ok(await c.call_tool("delete_vector", {"store": store, "id": "p1"}))["deleted"] is True
            assert call_ok(await c.call_tool("delete_vector", {"store": store, "id": "p1"}))["deleted"] is False
            assert call_ok(await c.call_tool("describe_store", {"store": store}))["points"] == 299

            assert call_ok(await c.call_tool("delete_store", {"store": store})) == {"store": store, "deleted": True}
            call_err(await c.call_tool("describe_store", {"store": store}), "does not exist")
    run(go())


@pytest.mark.parametrize("mode", MODES)
def test_errors_are_actionable_and_change_nothing(server, mode):
    async def go():
        async with Client(server.mcp_url, mode=mode) as c:
            call_ok(await c.call_tool("create_store", {"store": "e", "dimension": 3}))
            call_ok(await c.call_tool("insert_vector", {"store": "e", "id": "a", "vector": [1, 0, 0]}))
            # argument errors: missing, wrong type, unknown field, out of range
            call_err(await c.call_tool("insert_vector", {"store": "e", "id": "b"}), "missing field `vector`")
            call_err(await c.call_tool("insert_vector", {"store": "e", "id": "b", "vector": "1,2,3"}), "invalid type")
            call_err(await c.call_tool("search_vectors", {"store": "e", "vector": [1, 0, 0], "limit": 3}),
                     "unknown field `limit`")
            call_err(await c.call_tool("search_vectors", {"store": "e", "vector": [1, 0, 0], "k": 0}), "k", "between 1")
            # domain errors
            call_err(await c.call_tool("insert_vector", {"store": "e", "id": "b", "vector": [1, 2]}),
                     "2 dimensions", "expects 3")
            call_err(await c.call_tool("insert_vector", {"store": "e", "id": "", "vector": [1, 2, 3]}), "empty")
            call_err(await c.call_tool("insert_vector", {"store": "e", "id": "z", "vector": [0, 0, 0]}), "zero length")
            call_err(await c.call_tool("insert_vector", {"store": "e", "id": "b", "vector": [1, 2, 3], "metadata": [1]}),
                     "metadata must be a JSON object")
            call_err(await c.call_tool("insert_vectors", {"store": "e", "points": [
                {"id": "ok1", "vector": [1, 1, 1]}, {"id": "bad", "vector": [1, 1]}]}), "points[1]", "bad")
            call_err(await c.call_tool("search_vectors", {"store": "missing", "vector": [1, 2, 3]}),
                     "does not exist", "existing stores: e")
            call_err(await c.call_tool("create_store", {"store": "e", "dimension": 3}), "already exists")
            call_err(await c.call_tool("create_store", {"store": "bad name", "dimension": 3}), "only letters")
            call_err(await c.call_tool("create_store", {"store": "m", "dimension": 3, "metric": "hamming"}),
                     "unknown metric")
            call_err(await c.call_tool("create_store", {"store": "d", "dimension": 0}), "dimension 0")
            with pytest.raises(MCPError) as e:
                await c.call_tool("no_such_tool", {})
            assert e.value.error.code == -32602 and "available tools" in e.value.error.message
            # nothing was written by any failed call
            out = call_ok(await c.call_tool("describe_store", {"store": "e"}))
            assert out["points"] == 1
            assert call_ok(await c.call_tool("get_vector", {"store": "e", "id": "ok1"}))["found"] is False
    run(go())


def test_data_written_over_mcp_survives_a_kill(make_server):
    s = make_server()

    async def write():
        async with Client(s.mcp_url, mode="2026-07-28") as c:
            call_ok(await c.call_tool("create_store", {"store": "keep", "dimension": 2, "metric": "dot"}))
            call_ok(await c.call_tool("insert_vectors", {"store": "keep", "points": [
                {"id": str(i), "vector": [float(i), 1.0]} for i in range(100)]}))
    run(write())
    s.kill()
    s2 = make_server()  # same data dir name -> same data

    async def read():
        async with Client(s2.mcp_url, mode="legacy") as c:
            out = call_ok(await c.call_tool("search_vectors", {"store": "keep", "vector": [1.0, 0.0], "k": 3}))
            assert [r["id"] for r in out["results"]] == ["99", "98", "97"]
    run(read())


def test_stdio_transport(tmp_path):
    params = StdioServerParameters(command=rvdb_bin(), args=["mcp-stdio", "--persistence-dir", str(tmp_path / "d"),
                                                             "--backup-dir", str(tmp_path / "b")],
                                   env={"RVDB_LOG": "info"})

    async def go():
        async with Client(params, mode="legacy") as c:
            assert [t.name for t in (await c.list_tools()).tools] == EXPECTED_TOOLS
            call_ok(await c.call_tool("create_store", {"store": "s", "dimension": 2}))
            call_ok(await c.call_tool("insert_vector", {"store": "s", "id": "x", "vector": [1, 0]}))
            out = call_ok(await c.call_tool("search_vectors", {"store": "s", "vector": [1, 0.1], "k": 1}))
            assert out["results"][0]["id"] == "x"
            call_err(await c.call_tool("search_vectors", {"store": "s", "vector": [1]}), "expects 2")
    run(go())


def test_stdio_answers_malformed_lines_and_keeps_serving(tmp_path):
    """A line that is not JSON (or JSON with trailing garbage) gets a -32700 Parse error with id null, as over
    HTTP, instead of silence that leaves the client waiting; the lines after it are served."""
    proc = subprocess.Popen([rvdb_bin(), "mcp-stdio", "--persistence-dir", str(tmp_path / "d"),
                             "--backup-dir", str(tmp_path / "b")],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=dict(os.environ, RVDB_LOG="warn"))
    lines = queue.Queue()
    threading.Thread(target=lambda: [lines.put(json.loads(l)) for l in proc.stdout], daemon=True).start()

    def send(raw):
        proc.stdin.write(raw + b"\n")
        proc.stdin.flush()

    def next_message():
        try:
            return lines.get(timeout=30)
        except queue.Empty:
            pytest.fail("no answer on stdout")
    try:
        init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
        send(b"this is not json")
        send(json.dumps(init).encode())
        first, second = next_message(), next_message()
        assert first["id"] is None and first["error"]["code"] == -32700, first
        assert second["id"] == 1 and second["result"]["serverInfo"]["name"] == "rvdb", second
        send(json.dumps({"jsonrpc": "2.0", "method": "notifications/initialized"}).encode())
        send(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "ping"}).encode() + b" trailing garbage")
        send(json.dumps({"jsonrpc": "2.0", "id": 3, "method": "tools/list"}).encode())
        third, fourth = next_message(), next_message()
        assert third["id"] is None and third["error"]["code"] == -32700, third
        assert fourth["id"] == 3 and [t["name"] for t in fourth["result"]["tools"]] == EXPECTED_TOOLS, fourth
    finally:
        proc.stdin.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_huge_user_values_are_not_echoed_whole(server):
    """A 1 MB id (or store name, or a value in the wrong place, or tool name) is quoted in errors only in part."""
    huge = "x" * 1_000_000

    async def go():  # legacy: 2026-07-28 would carry the tool name in a header too (Mcp-Name)
        async with Client(server.mcp_url, mode="legacy") as c:
            call_ok(await c.call_tool("create_store", {"store": "s", "dimension": 2}))
            for tool, args in [
                ("insert_vector", {"store": "s", "id": huge, "vector": [1, 0]}),
                ("insert_vectors", {"store": "s", "points": [{"id": huge, "vector": [1, 0]}]}),
                ("get_vector", {"store": "s", "id": huge}),
                ("delete_vector", {"store": "s", "id": huge}),
                ("search_vectors", {"store": huge, "vector": [1, 0]}),
                ("search_vectors", {"store": "s", "vector": [1, 0], "k": huge}),
                ("describe_store", {"store": "s", huge: 1}),
                ("create_store", {"store": "t", "dimension": 2, "metric": huge}),
                ("backup_store", {"store": "s", "name": huge}),
                ("export_store", {"store": "s", "file": huge}),
                ("import_store", {"store": "t", "file": huge}),
                ("restore_store", {"backup": huge, "store": "t"}),
            ]:
                text = call_err(await c.call_tool(tool, args))
                assert len(text) < 1000, (tool, len(text), text[:200])
            with pytest.raises(MCPError) as e:
                await c.call_tool(huge, {})
            assert len(str(e.value)) < 1000, len(str(e.value))
            assert call_ok(await c.call_tool("describe_store", {"store": "s"}))["points"] == 0
    run(go())


def test_host_is_checked_before_auth_and_never_reflected(make_server):
    """With API keys configured, a keyless request with a foreign Host is refused (403, as /v1 refuses it)
    before the 401 whose challenge names the protected-resource URL, and that URL is never built from it."""
    s = make_server(env={"RVDB_API_TOKEN": "s3cret-token"})
    base = s.mcp_url.rsplit("/mcp", 1)[0]
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    evil = {"Host": "evil.example", "Accept": "application/json, text/event-stream"}
    for method, url, kw in [("POST", s.mcp_url, {"json": body}), ("GET", s.mcp_url, {}),
                            ("GET", base + "/.well-known/oauth-protected-resource", {}),
                            ("GET", base + "/.well-known/oauth-protected-resource/mcp", {}),
                            ("GET", base + "/v1/stores", {}), ("GET", base + "/metrics", {})]:
        r = httpx2.request(method, url, headers=evil, **kw)
        assert r.status_code == 403, (method, url, r.status_code, r.text)
        assert "evil.example" not in r.text and "evil.example" not in str(r.headers), (url, r.headers, r.text)
    # An allowed Host still gets the challenge, naming the URL it reached.
    r = httpx2.post(s.mcp_url, json=body, headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    host = base.split("://", 1)[1]
    assert f'resource_metadata="http://{host}/.well-known/oauth-protected-resource"' in r.headers["www-authenticate"]
    meta = httpx2.get(base + "/.well-known/oauth-protected-resource").json()
    assert meta["resource"] == f"http://{host}/mcp"


def test_bearer_auth(make_server):
    s = make_server(env={"RVDB_API_TOKEN": "s3cret-token"})
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    r = httpx2.post(s.mcp_url, json=body, headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Bearer resource_metadata=")
    r = httpx2.post(s.mcp_url, json=body, headers={"Authorization": "Bearer wrong"})
    assert r.status_code == 401
    meta = httpx2.get(s.mcp_url.replace("/mcp", "/.well-known/oauth-protected-resource")).json()
    assert meta["resource"].endswith("/mcp")

    async def go():
        http = httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret-token"})
        async with Client(streamable_http_client(s.mcp_url, http_client=http), mode="legacy") as c:
            assert len((await c.list_tools()).tools) == len(EXPECTED_TOOLS)
        await http.aclose()
    run(go())


def test_origin_is_validated(server):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    headers = {"Accept": "application/json, text/event-stream", "Origin": "http://evil.example"}
    r = httpx2.post(server.mcp_url, json=init, headers=headers)
    assert r.status_code == 403
    headers["Origin"] = server.mcp_url.rsplit("/mcp", 1)[0]
    r = httpx2.post(server.mcp_url, json=init, headers=headers)
    assert r.status_code == 200


def test_health(server):
    assert httpx2.get(server.mcp_url.replace("/mcp", "/healthz")).json() == {"status": "ok"}


def test_malformed_json_rpc_gets_json_rpc_errors(server):
    h = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    r = httpx2.post(server.mcp_url, content=b'{"jsonrpc": "2.0", broken', headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32700
    r = httpx2.post(server.mcp_url, content=b'[{"jsonrpc": "2.0", "id": 1, "method": "ping"}]', headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600
    r = httpx2.post(server.mcp_url, content=b'42', headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32600


def test_protocol_2025_06_18_is_negotiated(server):
    init = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
        "protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}}
    r = httpx2.post(server.mcp_url, json=init, headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 200
    data = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:") and line[5:].strip()]
    assert data[0]["result"]["protocolVersion"] == "2025-06-18"
    assert r.headers.get("mcp-session-id")


def test_2026_headers_must_match_the_body(server):
    body = {"jsonrpc": "2.0", "id": 2, "method": "tools/list", "params": {"_meta": {
        "io.modelcontextprotocol/protocolVersion": "2026-07-28", "io.modelcontextprotocol/clientCapabilities": {}}}}
    h = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2026-07-28"}
    r = httpx2.post(server.mcp_url, json=body, headers=h)  # no Mcp-Method header
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020
    h["Mcp-Method"] = "tools/call"  # does not match the body's method
    r = httpx2.post(server.mcp_url, json=body, headers=h)
    assert r.status_code == 400 and r.json()["error"]["code"] == -32020


def test_request_size_limit(make_server):
    s = make_server(extra_args=["--mcp-max-body-bytes", "100000"])
    big = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "insert_vector", "arguments": {
        "store": "x", "id": "a", "vector": [0.5] * 40000}}}
    r = httpx2.post(s.mcp_url, json=big, headers={"Accept": "application/json, text/event-stream"})
    assert r.status_code == 413 and "larger than the limit" in r.json()["error"]["message"]
    assert httpx2.get(s.mcp_url.replace("/mcp", "/healthz")).status_code == 200


def test_cancellation_stops_a_long_insert(server):
    import anyio
    n = 60000

    async def go():
        async with Client(server.mcp_url, mode="legacy") as c:
            call_ok(await c.call_tool("create_store", {"store": "cx", "dimension": 4}))
            pts = [{"id": f"c{i}", "vector": [1.0, float(i % 7), 2.0, 3.0]} for i in range(n)]
            with anyio.CancelScope() as scope:
                async def on_progress(p, total, message):
                    scope.cancel()  # cancel as soon as the server reports the first written batch
                await c.call_tool("insert_vectors", {"store": "cx", "points": pts}, progress_callback=on_progress)
            assert scope.cancel_called
            await anyio.sleep(0.5)
            written = call_ok(await c.call_tool("describe_store", {"store": "cx"}))["points"]
            assert 0 < written < n, f"cancellation should stop the insert early, {written} of {n} written"
            print(f"cancelled after {written} of {n} points")
            # the server keeps serving, and what was written is consistent
            out = call_ok(await c.call_tool("search_vectors", {"store": "cx", "vector": [1, 0, 2, 3], "k": 1}))
            assert out["results"]
    run(go())
