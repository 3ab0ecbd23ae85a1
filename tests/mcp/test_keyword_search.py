"""Keyword (BM25) and hybrid search through the official MCP SDK against `rvdb serve`, on real sentences (man
pages): every BM25 score equals a reference computed here from the formula over the texts the test stored; a store
of 8 shards ranks exactly as the same texts in 1 shard (same ids, same scores, bit for bit); filters inside keyword
search are exact; hybrid results say which list found them and fuse by RRF as written; and the index is the same
after kill -9 and a restart, after backup / restore into a new store, and after export / import."""
import asyncio
import math
import re

from mcp import Client

from test_mcp_gateway import call_err, call_ok
from test_text_memory import sentences

K1, B = 1.2, 0.75
TOPICS = ("net", "disk", "user")


def plain(s):
    """Sentences whose words are unambiguous: ASCII, and no character that Unicode word segmentation joins words
    with (`.` `'` `:` `,` `_` between letters or digits), so splitting on non-alphanumerics gives its very words."""
    return s.isascii() and not re.search(r"[A-Za-z0-9][.'’:,_][A-Za-z0-9]", s)


def words(s):
    return re.findall(r"[a-z0-9]+", s.lower())


def reference(texts, query, k, accept=lambda i: True):
    """BM25 (Lucene's: idf = ln(1 + (N - df + 0.5) / (df + 0.5)), no (k1 + 1) factor) over every stored text, the
    top k of those `accept` takes, best first, ties by id."""
    docs = {f"d{i:04d}": words(t) for i, t in enumerate(texts)}
    docs = {d: w for d, w in docs.items() if w}
    n = len(docs)
    avgdl = sum(len(w) for w in docs.values()) / n
    q = words(query)
    df = {t: sum(1 for w in docs.values() if t in w) for t in set(q)}
    out = []
    for d, w in docs.items():
        if not accept(int(d[1:])):
            continue
        score, hit = 0.0, False
        for t in q:
            tf = w.count(t)
            if tf:
                hit = True
                idf = math.log(1 + (n - df[t] + 0.5) / (df[t] + 0.5))
                score += idf * tf / (tf + K1 * (1 - B + B * len(w) / avgdl))
        if hit:
            out.append((d, score))
    out.sort(key=lambda x: (-x[1], x[0]))
    return out[:k]


def queries(texts, count):
    """Queries from the stored texts: three rarer words of every n-th sentence, and a common word or two."""
    out = ["the file", "option", "default value", "error"]
    for t in texts[:: max(1, len(texts) // count)]:
        w = [x for x in words(t) if len(x) > 3]
        if len(w) >= 3:
            out.append(" ".join(w[-3:]))
    return out[:count]


async def keyword(c, store, query, k=10, **extra):
    out = call_ok(await c.call_tool("search_text", {"store": store, "query": query, "k": k, "mode": "keyword",
                                                     "with_text": False, **extra}))
    return [(h["id"], h["bm25"]) for h in out["results"]], out["results"]


def test_bm25_matches_the_formula_on_any_shard_count_and_survives_restarts_and_backups(make_server):
    texts = [s for s in sentences(2500) if plain(s)][:800]
    assert len(texts) >= 500
    docs = [{"id": f"d{i:04d}", "text": t, "metadata": {"n": i, "topic": TOPICS[i % 3]}} for i, t in enumerate(texts)]
    server = make_server()
    qs = queries(texts, 40)

    async def setup():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            for store, shards in (("one", 1), ("eight", 8)):
                call_ok(await c.call_tool("create_store", {"store": store, "embedding": {}, "shards": shards}))
                for start in range(0, len(docs), 200):
                    call_ok(await c.call_tool("insert_texts", {"store": store, "documents": docs[start:start + 200]}))
            # A store without an embedding model searches by keyword by default (texts written as metadata).
            call_ok(await c.call_tool("create_store", {"store": "plain", "dimension": 2}))
            for i, t in enumerate(texts[:50]):
                call_ok(await c.call_tool("insert_vector", {"store": "plain", "id": f"d{i:04d}", "vector": [1, i],
                                                            "metadata": {"_text": t}}))

    async def snapshot(store):
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            return [(await keyword(c, store, q))[0] for q in qs]

    asyncio.run(setup())
    one = asyncio.run(snapshot("one"))
    eight = asyncio.run(snapshot("eight"))
    assert one == eight, "8 shards rank and score exactly as 1"
    nonempty = 0
    for q, got in zip(qs, one):
        want = reference(texts, q, 10)
        assert [g[0] for g in got] == [w[0] for w in want], q
        for (_, g), (_, w) in zip(got, want):
            assert abs(g - w) <= 1e-5 * max(1.0, w), (q, g, w)
        nonempty += bool(got)
    assert nonempty >= len(qs) - 2

    async def checks():
        async with Client(server.mcp_url, mode="2026-07-28") as c:
            # filters inside keyword search are exact: the reference restricted to the same points
            topic = {"must": [{"key": "topic", "match": {"value": "disk"}}]}
            ranged = {"must": [{"key": "n", "range": {"gte": 100, "lt": 400}}]}
            for q in qs[:15]:
                for store in ("one", "eight"):
                    got, hits = await keyword(c, store, q, k=7, filter=topic)
                    assert [g[0] for g in got] == [w[0] for w in reference(texts, q, 7, lambda i: i % 3 == 1)], q
                    assert all(h["metadata"]["topic"] == "disk" for h in hits)
                    got, _ = await keyword(c, store, q, k=5, filter=ranged)
                    assert [g[0] for g in got] == [w[0] for w in reference(texts, q, 5, lambda i: 100 <= i < 400)]

            # an identifier only the keyword list can find exactly
            target = 123
            rare = max(words(texts[target]), key=lambda w: (len(w), w))
            res = call_ok(await c.call_tool("search_text", {"store": "eight", "query": rare, "mode": "keyword"}))
            assert f"d{target:04d}" in [h["id"] for h in res["results"]]
            assert all(h["sources"] == ["keyword"] and "distance" not in h for h in res["results"])
            assert res["results"][0]["text"]

            # hybrid: RRF over the two lists (each with `prefetch` candidates), as the fused scores say
            q = qs[7]
            dense = call_ok(await c.call_tool("search_text", {"store": "eight", "query": q, "k": 20}))["results"]
            kw = call_ok(await c.call_tool("search_text", {"store": "eight", "query": q, "k": 20,
                                                           "mode": "keyword"}))["results"]
            hyb = call_ok(await c.call_tool("search_text", {"store": "eight", "query": q, "k": 10, "mode": "hybrid",
                                                            "prefetch": 20}))["results"]
            rank_d = {h["id"]: r for r, h in enumerate(dense, 1)}
            rank_k = {h["id"]: r for r, h in enumerate(kw, 1)}
            want = sorted(set(rank_d) | set(rank_k),
                          key=lambda d: (-(1 / (60 + rank_d[d]) if d in rank_d else 0)
                                         - (1 / (60 + rank_k[d]) if d in rank_k else 0), d))[:10]
            assert [h["id"] for h in hyb] == want
            for h in hyb:
                assert h["sources"] == [s for s in ("dense", "keyword") if h["id"] in (rank_d if s == "dense" else rank_k)]
                assert ("distance" in h) == (h["id"] in rank_d) and ("bm25" in h) == (h["id"] in rank_k)
                expect = (1 / (60 + rank_d[h["id"]]) if h["id"] in rank_d else 0) + \
                         (1 / (60 + rank_k[h["id"]]) if h["id"] in rank_k else 0)
                assert abs(h["score"] - expect) < 1e-6
            # weights: keyword only reproduces the keyword order; dbsf runs
            only_kw = call_ok(await c.call_tool("search_text", {"store": "eight", "query": q, "k": 10, "mode": "hybrid",
                                                                "dense_weight": 0, "prefetch": 20}))["results"]
            assert [h["id"] for h in only_kw[:min(10, len(kw))]] == [h["id"] for h in kw[:10]]
            call_ok(await c.call_tool("search_text", {"store": "eight", "query": q, "mode": "hybrid", "fusion": "dbsf"}))

            # the store without an embedding model: keyword by default, and dense is refused clearly
            word3 = max(words(texts[3]), key=lambda w: (len(w), w))
            res = call_ok(await c.call_tool("search_text", {"store": "plain", "query": word3}))
            assert "d0003" in [h["id"] for h in res["results"]]
            assert all(h["sources"] == ["keyword"] for h in res["results"])
            call_err(await c.call_tool("search_text", {"store": "plain", "query": "x", "mode": "dense"}),
                     "no embedding model")
            # bad input
            call_err(await c.call_tool("search_text", {"store": "one", "query": "x", "mode": "sparse"}), "mode")
            call_err(await c.call_tool("search_text", {"store": "one", "query": "x", "mode": "keyword",
                                                       "score_threshold": 0.5}), "score_threshold")
            call_err(await c.call_tool("search_text", {"store": "one", "query": "x", "mode": "hybrid",
                                                       "dense_weight": -1}), "dense_weight")
            call_err(await c.call_tool("create_store", {"store": "bad", "dimension": 2,
                                                        "text_index": {"stemmer": "klingon"}}), "stemmer")
            call_err(await c.call_tool("create_store", {"store": "bad", "dimension": 2, "text_index": {"b": 2}}),
                     "b")
            # only stop words: no terms, no results (not an error)
            call_ok(await c.call_tool("create_store", {"store": "stemmed", "dimension": 2, "text_index": {
                "stemmer": "english", "stop_words_language": "english"}}))
            call_ok(await c.call_tool("insert_vector", {"store": "stemmed", "id": "r", "vector": [1, 0],
                                                        "metadata": {"_text": "The runners were running"}}))
            res = call_ok(await c.call_tool("search_text", {"store": "stemmed", "query": "run"}))["results"]
            assert [h["id"] for h in res] == ["r"]
            assert call_ok(await c.call_tool("search_text", {"store": "stemmed", "query": "the of"}))["results"] == []
            d = call_ok(await c.call_tool("describe_store", {"store": "stemmed"}))
            assert d["text_index"]["stemmer"] == "english", d

            # deletes and metadata updates keep the index exact
            call_ok(await c.call_tool("delete_points", {"store": "eight", "ids": [one[0][0][0]]}))
            got, _ = await keyword(c, "eight", qs[0])
            assert one[0][0][0] not in [g[0] for g in got]
            call_ok(await c.call_tool("insert_texts", {"store": "eight", "documents": [docs[int(one[0][0][0][1:])]]}))

            call_ok(await c.call_tool("backup_store", {"store": "eight", "name": "kw"}))
            call_ok(await c.call_tool("restore_store", {"backup": "kw", "store": "restored", "shards": 3}))
            e = call_ok(await c.call_tool("export_store", {"store": "eight", "file": "eight.jsonl"}))
            call_ok(await c.call_tool("import_store", {"file": e["file"], "store": "imported"}))

    asyncio.run(checks())
    assert asyncio.run(snapshot("restored")) == one, "a restore into 3 shards ranks as 1 shard"
    assert asyncio.run(snapshot("imported")) == one
    server.kill()
    server.start()
    assert asyncio.run(snapshot("eight")) == one, "after kill -9 and a restart"
    assert asyncio.run(snapshot("one")) == one
