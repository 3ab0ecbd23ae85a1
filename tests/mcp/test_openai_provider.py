"""The `openai` embedding provider against a second real rvdb process: rvdb A serves its local model on the
OpenAI-compatible `POST /v1/embeddings` (behind an API key); rvdb B is started with `--openai-base-url` pointing
at A (through a fault-injecting HTTP proxy in this test, so the provider can be made to answer 500, 429 or
nothing at all) and the key in its environment. Texts stored and searched on B are embedded by A: B's vectors
equal A's local ones. A provider that answers 500, hangs past the timeout or changes its dimension gives a clear
`isError`, and nothing is written; a 429 is retried."""
import asyncio
import http.server
import json
import socketserver
import threading
import time
import urllib.request

from mcp import Client

from test_mcp_gateway import call_err, call_ok
from test_text_memory import sentences

KEY = "sk-rvdb-test-0123456789"


class Proxy:
    """An HTTP proxy to `target` with a switchable fault: pass, 500, hang, 429 (once), short (drop a component
    of every vector). Counts requests and records the Authorization headers it saw."""

    def __init__(self, target):
        self.target, self.mode, self.requests, self.auth = target, "pass", 0, set()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                proxy.requests += 1
                proxy.auth.add(self.headers.get("Authorization", ""))
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                mode = proxy.mode
                if mode == "429":
                    proxy.mode = "pass"
                    return self.answer(429, b'{"error": {"message": "slow down"}}', {"Retry-After": "0"})
                if mode == "500":
                    return self.answer(500, b'{"error": {"message": "the model server fell over"}}')
                if mode == "hang":
                    time.sleep(3)
                    return self.answer(500, b"{}")
                req = urllib.request.Request(proxy.target + self.path, data=body, method="POST",
                                             headers={"Content-Type": "application/json",
                                                      "Authorization": self.headers.get("Authorization", "")})
                try:
                    with urllib.request.urlopen(req, timeout=30) as r:
                        status, data = r.status, r.read()
                except urllib.error.HTTPError as e:
                    status, data = e.code, e.read()
                if mode == "short" and status == 200:
                    doc = json.loads(data)
                    for d in doc["data"]:
                        d["embedding"] = d["embedding"][:-1]
                    data = json.dumps(doc).encode()
                self.answer(status, data)

            def answer(self, status, data, headers=()):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in dict(headers).items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def test_texts_embedded_by_a_second_rvdb_over_the_openai_api(make_server, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    a = make_server("a", extra_args=["--api-key-file", str(keys)])
    base_a = a.mcp_url.rsplit("/mcp", 1)[0]
    proxy = Proxy(base_a)
    b = make_server("b", extra_args=["--openai-base-url", proxy.url, "--openai-timeout", "1000", "--openai-retries", "1",
                                     "--openai-batch-size", "16"],
                    env={"RVDB_OPENAI_API_KEY": KEY})
    texts = sentences(60)

    async def go():
        async with Client(b.mcp_url, mode="2026-07-28") as c:
            made = call_ok(await c.call_tool("create_store", {"store": "remote", "embedding": {"provider": "openai", "model": "all-MiniLM-L6-v2"}}))
            assert made["dimension"] == 384, made
            desc = call_ok(await c.call_tool("describe_store", {"store": "remote"}))
            assert desc["embedding"] == {"provider": "openai", "model": "all-MiniLM-L6-v2", "dimension": 384, "normalized": True}
            call_ok(await c.call_tool("create_store", {"store": "local", "embedding": {}}))
            docs = [{"text": t, "id": f"s{i}", "metadata": {"i": i}} for i, t in enumerate(texts)]
            before = proxy.requests
            out = call_ok(await c.call_tool("insert_texts", {"store": "remote", "documents": docs}))
            assert out["inserted"] == len(texts)
            assert proxy.requests - before == 4, "60 texts in requests of 16"
            call_ok(await c.call_tool("insert_texts", {"store": "local", "documents": docs}))
            assert proxy.auth == {f"Bearer {KEY}"}, "the key from the environment is sent"
            # the same vectors as the local model's: A embeds with the very model B runs locally
            for i in (0, 17, 59):
                r = call_ok(await c.call_tool("get_vector", {"store": "remote", "id": f"s{i}"}))["point"]["vector"]
                l = call_ok(await c.call_tool("get_vector", {"store": "local", "id": f"s{i}"}))["point"]["vector"]
                assert sum(x * y for x, y in zip(r, l)) > 0.99999, i
            hits = call_ok(await c.call_tool("search_text", {"store": "remote", "query": texts[17], "k": 3}))["results"]
            assert hits[0]["id"] == "s17" and hits[0]["text"] == texts[17], hits

            # failures: a clear isError, nothing written
            def count():
                return c.call_tool("count", {"store": "remote"})
            new = [{"text": "a note that must not be stored", "id": "never"}]
            proxy.mode = "500"
            call_err(await c.call_tool("insert_texts", {"store": "remote", "documents": new}), "unavailable", "500", "fell over")
            call_err(await c.call_tool("search_text", {"store": "remote", "query": "x"}), "500")
            proxy.mode = "hang"
            started = time.monotonic()
            call_err(await c.call_tool("insert_texts", {"store": "remote", "documents": new}), "did not answer within 1000 ms")
            assert time.monotonic() - started < 10, "a timeout and one retry, not forever"
            proxy.mode = "short"
            call_err(await c.call_tool("insert_texts", {"store": "remote", "documents": new}), "383-d", "384")
            proxy.mode = "pass"
            assert call_ok(await count())["count"] == len(texts), "nothing was written"
            assert call_ok(await c.call_tool("get_vector", {"store": "remote", "id": "never"}))["found"] is False
            # a 429 is retried (after its Retry-After), and the write then succeeds
            proxy.mode = "429"
            before = proxy.requests
            call_ok(await c.call_tool("insert_texts", {"store": "remote", "documents": new}))
            assert proxy.requests - before == 2
            assert call_ok(await count())["count"] == len(texts) + 1
            # a model the provider does not have: refused at creation, with the provider's words
            call_err(await c.call_tool("create_store", {"store": "nomodel", "embedding": {"provider": "openai", "model": "no-such-model"}}),
                     "no-such-model")
            assert "nomodel" not in [s["name"] for s in call_ok(await c.call_tool("list_stores", {}))["stores"]]
    try:
        asyncio.run(go())
    finally:
        proxy.close()


def test_without_a_key_or_a_provider_the_errors_say_what_to_configure(make_server, tmp_path):
    keys = tmp_path / "keys"
    keys.write_text(KEY + "\n")
    a = make_server("a", extra_args=["--api-key-file", str(keys)])
    base_a = a.mcp_url.rsplit("/mcp", 1)[0]
    no_key = make_server("nokey", extra_args=["--openai-base-url", base_a], env={"RVDB_OPENAI_API_KEY": "", "OPENAI_API_KEY": ""})
    plain = make_server("plain")

    async def go():
        async with Client(no_key.mcp_url, mode="2026-07-28") as c:
            call_err(await c.call_tool("create_store", {"store": "x", "embedding": {"provider": "openai", "model": "all-MiniLM-L6-v2"}}),
                     "401", "api key")
        async with Client(plain.mcp_url, mode="2026-07-28") as c:
            call_err(await c.call_tool("create_store", {"store": "x", "embedding": {"provider": "openai", "model": "m"}}),
                     "not configured", "--openai-base-url")
            call_err(await c.call_tool("create_store", {"store": "x", "embedding": {"provider": "bogus"}}), "provider")
    asyncio.run(go())
