"""Server-side embeddings against a real `rvdb serve` with the model the test command installs (all-MiniLM-L6-v2
from PyPI): the OpenAI-compatible `POST /v1/embeddings` gives sentence-transformers' vectors (the golden file),
in float and base64; bad requests are 4xx naming the problem; a store created with an embedding model records
it (dimension derived from the model), shows it on describe over MCP and REST, keeps it across a restart, and
refuses a dimension that contradicts the model."""
import asyncio
import base64
import json
import math
import pathlib
import struct

from mcp import Client

from test_mcp_gateway import call_err, call_ok
from test_rest import Rest

GOLDEN = json.loads((pathlib.Path(__file__).parents[1] / "embeddings" / "golden.json").read_text())


def cosine(a, b):
    return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_openai_compatible_embeddings_match_sentence_transformers(server):
    api = Rest(server)
    texts, want = GOLDEN["texts"][:12], GOLDEN["vectors"][:12]
    out = api.ok("POST", "/v1/embeddings", {"input": texts, "model": "all-MiniLM-L6-v2"})
    assert out["object"] == "list" and out["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in out["data"]] == list(range(len(texts)))
    for d, w in zip(out["data"], want):
        assert d["object"] == "embedding" and len(d["embedding"]) == 384
        assert cosine(d["embedding"], w) >= 0.999
    assert out["usage"]["prompt_tokens"] == out["usage"]["total_tokens"] > len(texts)
    # one text, default model; base64 = the same floats as little-endian f32 bytes
    one = api.ok("POST", "/v1/embeddings", {"input": texts[0]})
    assert len(one["data"]) == 1 and cosine(one["data"][0]["embedding"], want[0]) >= 0.999
    b64 = api.ok("POST", "/v1/embeddings", {"input": [texts[0]], "encoding_format": "base64", "dimensions": 384})
    raw = base64.b64decode(b64["data"][0]["embedding"])
    floats = struct.unpack(f"<{len(raw) // 4}f", raw)
    assert len(floats) == 384 and max(abs(a - b) for a, b in zip(floats, one["data"][0]["embedding"])) < 1e-6
    # refusals: 4xx with the JSON error shape, naming what is wrong
    api.err("POST", "/v1/embeddings", {"input": []}, 400, "invalid_argument", "1 to 2048")
    api.err("POST", "/v1/embeddings", {"input": ["a", "  "]}, 400, "invalid_argument", "input[1]")
    api.err("POST", "/v1/embeddings", {"input": "a", "model": "text-embedding-3-small"}, 404, "not_found",
            "not installed")
    api.err("POST", "/v1/embeddings", {"input": "a", "model": "../etc"}, 400, "invalid_argument")
    api.err("POST", "/v1/embeddings", {"input": "a", "dimensions": 256}, 400, "invalid_argument", "384")
    api.err("POST", "/v1/embeddings", {"input": "a", "encoding_format": "int8"}, 400, "invalid_argument")
    api.err("POST", "/v1/embeddings", {"input": "a", "temperature": 1}, 400, "invalid_argument", "temperature")


def test_a_store_bound_to_a_model_records_it(server):
    api = Rest(server)
    want = {"provider": "local", "model": "all-MiniLM-L6-v2", "dimension": 384, "normalized": True}

    async def go():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            out = call_ok(await c.call_tool("create_store", {"store": "mem", "embedding": {}}))
            assert out["dimension"] == 384 and out["embedding"] == want
            assert call_ok(await c.call_tool("describe_store", {"store": "mem"}))["embedding"] == want
            call_err(await c.call_tool("create_store", {"store": "m2", "dimension": 128,
                                                        "embedding": {"model": "all-MiniLM-L6-v2"}}),
                     "384", "128")
            call_err(await c.call_tool("create_store", {"store": "m3", "embedding": {"model": "nope"}}),
                     "not installed")
            call_err(await c.call_tool("create_store", {"store": "m4", "embedding": {"provider": "cloud"}}),
                     "provider")
            call_err(await c.call_tool("create_store", {"store": "m5"}), "dimension is required")
            # a store without a model shows none
            assert "embedding" not in call_ok(await c.call_tool("create_store", {"store": "plain", "dimension": 3}))
    asyncio.run(go())
    created = api.ok("POST", "/v1/stores", {"name": "rest_mem", "dimension": 384, "embedding": {"model": "all-MiniLM-L6-v2"}},
                     status=201)
    assert created["embedding"] == want
    names = sorted(s["name"] for s in api.ok("GET", "/v1/stores")["stores"])
    assert names == ["mem", "plain", "rest_mem"], "refused creates left nothing behind"
    server.stop()
    server.start()
    api = Rest(server)
    assert api.ok("GET", "/v1/stores/mem")["embedding"] == want
    assert "embedding" not in api.ok("GET", "/v1/stores/plain")
