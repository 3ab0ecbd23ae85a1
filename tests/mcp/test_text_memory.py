"""Text in, text out through the official MCP SDK against `rvdb serve`: 1,000 real sentences (man pages, as
bench/corpus.py extracts them) stored with insert_texts into a store bound to the default model; each is found
again by search_text with its own words (first, for the whole sentence; within the top 3 for at least 98% when
every fourth word of a sentence of 8 or more words is dropped); plus REST, content-derived ids, filters inside text search, and the refusals that
must change nothing."""
import asyncio
import pathlib
import subprocess
import sys

from mcp import Client

from test_mcp_gateway import call_err, call_ok
from test_rest import Rest

ROOT = pathlib.Path(__file__).parents[2]


def sentences(n):
    out = subprocess.run([sys.executable, str(ROOT / "bench" / "corpus.py"), "--count", str(n), "--seed", "3"],
                         capture_output=True, text=True, check=True).stdout
    return [l for l in out.splitlines() if l]


def own_words(s):
    """The sentence's words without every fourth one when it has 8 or more (a short sentence cut further is no
    longer about anything: "Defaults to concatenate." would be "Defaults to")."""
    words = s.split()
    if len(words) < 8:
        return s
    return " ".join(w for i, w in enumerate(words) if i % 4 != 3)


def test_a_thousand_sentences_are_found_by_their_own_words(server):
    texts = sentences(1000)

    async def go():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            call_ok(await c.call_tool("create_store", {"store": "mem", "embedding": {}}))
            ids = []
            for start in range(0, len(texts), 250):
                batch = [{"text": t, "metadata": {"n": start + i, "odd": (start + i) % 2 == 1}}
                         for i, t in enumerate(texts[start:start + 250])]
                out = call_ok(await c.call_tool("insert_texts", {"store": "mem", "documents": batch}))
                assert out["inserted"] == len(batch) and out["stale"] == 0
                ids += out["ids"]
            assert len(set(ids)) == len(texts)
            assert call_ok(await c.call_tool("describe_store", {"store": "mem"}))["points"] == len(texts)
            # every sentence by its own words: itself at rank 1 (insert and query embed alike, batched or not),
            # and with every fourth word dropped within the top 3 for at least 98% (measured: 99.3%; the rest are
            # sentences whose dropped word was the one that mattered)
            exact_missed, cut_missed = [], []
            for i, t in enumerate(texts):
                results = call_ok(await c.call_tool("search_text", {"store": "mem", "query": t, "k": 3}))["results"]
                assert all(0.0 <= h["distance"] <= 2.0 for h in results)
                if not results or results[0]["id"] != ids[i]:
                    exact_missed.append(t)
                else:
                    assert results[0]["text"] == t and results[0]["metadata"]["n"] == i, results[0]
                    assert results[0]["distance"] < 1e-4, results[0]
                cut = await c.call_tool("search_text", {"store": "mem", "query": own_words(t), "k": 3})
                if ids[i] not in [h["id"] for h in call_ok(cut)["results"]]:
                    cut_missed.append(t)
            assert not exact_missed, f"{len(exact_missed)} sentences not first for their own text: {exact_missed[:3]}"
            found = 1 - len(cut_missed) / len(texts)
            print(f"top-3 with every fourth word dropped: {found:.1%}")
            assert found >= 0.98, (found, cut_missed[:5])
            # the same text again (no id) is the same point, not a second one
            again = call_ok(await c.call_tool("insert_texts", {"store": "mem", "documents": [{"text": texts[0]}]}))
            assert again["ids"] == [ids[0]]
            assert call_ok(await c.call_tool("describe_store", {"store": "mem"}))["points"] == len(texts)
            # a filter applies inside text search
            hits = call_ok(await c.call_tool("search_text", {"store": "mem", "query": own_words(texts[1]), "k": 5,
                                                             "filter": {"must": [{"key": "odd", "match": {"value": False}}]},
                                                             "with_metadata": True}))["results"]
            assert hits and all(h["metadata"]["odd"] is False for h in hits)
            assert ids[1] not in [h["id"] for h in hits]
            # refusals name the problem and write nothing
            call_ok(await c.call_tool("create_store", {"store": "vecs", "dimension": 384}))
            call_err(await c.call_tool("insert_texts", {"store": "vecs", "documents": [{"text": "x"}]}),
                     "no embedding model")
            call_err(await c.call_tool("search_text", {"store": "vecs", "query": "x", "mode": "dense"}),
                     "no embedding model")
            # without a model, search_text searches the stored texts by keyword (here: none)
            assert call_ok(await c.call_tool("search_text", {"store": "vecs", "query": "x"}))["results"] == []
            call_err(await c.call_tool("insert_texts", {"store": "mem", "documents": [
                {"text": "fine"}, {"text": "   "}]}), "documents[1].text")
            call_err(await c.call_tool("insert_texts", {"store": "mem", "documents": [
                {"text": "fine", "metadata": {"_text": "spoof"}}]}), "_text")
            call_err(await c.call_tool("search_text", {"store": "mem", "query": ""}), "query")
            call_err(await c.call_tool("search_vectors", {"store": "mem", "vector": [0.1] * 383}), "384")
            call_err(await c.call_tool("insert_vector", {"store": "vecs", "id": "v", "vector": [0.1] * 384,
                                                         "metadata": {"_text": 5}}), "_text must be a string")
            assert call_ok(await c.call_tool("describe_store", {"store": "mem"}))["points"] == len(texts)
            return ids
    ids = asyncio.run(go())
    # REST: the same operations
    api = Rest(server)
    out = api.ok("PUT", "/v1/stores/mem/texts", {"documents": [{"id": "note-1", "text": "Alice prefers tea over coffee."}]})
    assert out["ids"] == ["note-1"] and out["inserted"] == 1
    hits = api.ok("POST", "/v1/stores/mem/texts/search", {"query": "what does Alice like to drink?", "k": 1})["results"]
    assert hits[0]["id"] == "note-1" and hits[0]["text"] == "Alice prefers tea over coffee."
    api.err("POST", "/v1/stores/mem/texts/search", {"query": "x", "bogus": 1}, 400, "invalid_argument", "bogus")
    assert api.ok("GET", "/v1/stores/mem")["points"] == len(ids) + 1
