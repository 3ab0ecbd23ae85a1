"""The CLI (`rvdb create-store`, `insert`, `search`, …) against real `rvdb serve` and cluster processes: it goes
through the gateway's REST API, so its stores live in the one catalog (the index manager's, in process for
`rvdb serve`) and are never dropped as orphans; refusals exit 1 with the gateway's JSON error. And the embedded
deployment's catalog: stores survive restarts, dropped ones stay dropped, data from before the catalog existed
is adopted."""
import json
import os
import shutil
import subprocess
import time

from conftest import Server, rvdb_bin


def base_url(url):
    return url.rsplit("/mcp", 1)[0]


def cli(url, *args, ok=True):
    """Runs `rvdb <args> --url <gateway>`; returns (exit code, JSON of stdout or stderr)."""
    p = subprocess.run([rvdb_bin(), *args, "--url", base_url(url)], capture_output=True, text=True, timeout=60,
                       env=dict(os.environ, RVDB_LOG="warn"))
    out = p.stdout if p.returncode == 0 else p.stderr
    try:
        body = json.loads(out)
    except json.JSONDecodeError:
        raise AssertionError(f"rvdb {args}: exit {p.returncode}, not JSON: {p.stdout!r} {p.stderr!r}")
    if ok:
        assert p.returncode == 0, (args, body)
    return p.returncode, body


def names(url):
    return sorted(s["name"] for s in cli(url, "list-stores")[1]["stores"])


def test_every_operation_through_the_gateway_and_the_store_is_kept(server, tmp_path):
    url = server.mcp_url
    _, created = cli(url, "create-store", "docs", "--dimension", "2", "--metric", "euclidean", "--shards", "3")
    assert created["name"] == "docs" and created["shards"] == 3, created
    code, err = cli(url, "create-store", "docs", "--dimension", "2", ok=False)
    assert code == 1 and err["error"]["code"] == "already_exists", err
    assert cli(url, "insert", "docs", "--id", "a", "--vector", "[0, 0]", "--metadata", '{"lang": "en"}')[1]["inserted"] == 1
    lines = tmp_path / "points.jsonl"
    lines.write_text("".join(json.dumps({"id": i, "vector": [i, 0], "metadata": {"i": i}}) + "\n" for i in range(1, 51)))
    assert cli(url, "import", "docs", str(lines), "--batch", "7")[1]["imported"] == 50
    hits = cli(url, "search", "docs", "--vector", "[2.2, 0]", "-k", "3")[1]["results"]
    assert [h["id"] for h in hits] == ["2", "3", "1"], hits
    assert abs(hits[0]["distance"] - 0.2) < 1e-5, hits
    hits = cli(url, "search", "docs", "--vector", "[0, 0]", "--filter",
               '{"must": [{"key": "lang", "match": {"value": "en"}}]}')[1]["results"]
    assert [h["id"] for h in hits] == ["a"], hits
    code, err = cli(url, "search", "docs", "--vector", "[1, 2, 3]", ok=False)
    assert code == 1 and err["error"]["code"] == "invalid_argument" and "dimension" in err["error"]["message"], err
    code, err = cli(url, "search", "nope", "--vector", "[1, 2]", ok=False)
    assert code == 1 and err["error"]["code"] == "not_found", err
    got = cli(url, "get", "docs", "a", "7", "missing")[1]["points"]
    assert [(p["id"], p["vector"]) for p in got] == [("a", [0, 0]), ("7", [7, 0])], got
    assert cli(url, "delete", "docs", "7", "missing")[1]["deleted"] == 1
    assert cli(url, "stats", "docs")[1]["points"] == 50
    cli(url, "sync", "docs")
    backup = cli(url, "backup", "docs", "--name", "b1")[1]
    assert backup["name"] == "b1" and backup["points"] == 50, backup
    assert [b["name"] for b in cli(url, "list-backups", "--store", "docs")[1]["backups"]] == ["b1"]
    restored = cli(url, "restore", "b1", "--store", "copy")[1]
    assert restored["points"] == 50, restored
    exported = cli(url, "export-store", "docs")[1]
    # import takes exactly the file export returned
    imported = cli(url, "import-store", "again", "--file", exported["file"])[1]
    assert imported["points"] == 50, imported
    assert names(url) == ["again", "copy", "docs"]
    # the in-process manager owns these stores: its heartbeats (every second) keep every replica
    time.sleep(2.5)
    assert cli(url, "stats", "docs")[1]["points"] == 50
    assert cli(url, "stats", "again")[1]["points"] == 50
    assert cli(url, "delete-backup", "b1")[1]["deleted"] is True
    cli(url, "drop-store", "copy")
    code, err = cli(url, "drop-store", "copy", ok=False)
    assert code == 1 and err["error"]["code"] == "not_found", err


def test_the_cli_creates_stores_a_cluster_keeps(cluster):
    url = cluster.mcp_url
    cli(url, "create-store", "c", "--dimension", "2", "--shards", "3", "--replication-factor", "2")
    for i in range(20):
        cli(url, "insert", "c", "--id", f"p{i}", "--vector", f"[{i + 1}, 1]")
    time.sleep(1.5)  # several heartbeats (every 200 ms): a replica the manager did not place would be dropped
    assert cli(url, "stats", "c")[1]["points"] == 20
    assert len(cli(url, "search", "c", "--vector", "[1, 1]", "-k", "20")[1]["results"]) == 20


def test_the_embedded_catalog_survives_restarts_and_adopts_data_without_one(tmp_path):
    s = Server(tmp_path / "data").start()
    try:
        cli(s.mcp_url, "create-store", "keep", "--dimension", "2", "--shards", "2")
        cli(s.mcp_url, "create-store", "gone", "--dimension", "2")
        for i in range(10):
            cli(s.mcp_url, "insert", "keep", "--id", f"k{i}", "--vector", f"[{i}, 1]")
        cli(s.mcp_url, "drop-store", "gone")
    finally:
        s.stop()
    s = Server(tmp_path / "data").start()
    try:
        assert names(s.mcp_url) == ["keep"], "a dropped store stays dropped; the others stay"
        assert cli(s.mcp_url, "stats", "keep")[1]["points"] == 10
    finally:
        s.stop()
    # data written before the embedded deployment had a catalog (or with its catalog lost): adopted as found
    shutil.rmtree(tmp_path / "data" / "manager")
    s = Server(tmp_path / "data").start()
    try:
        assert names(s.mcp_url) == ["keep"]
        stats = cli(s.mcp_url, "stats", "keep")[1]
        assert (stats["points"], stats["shards"]) == (10, 2), stats
        time.sleep(2.5)  # past a few heartbeats: adopted replicas are not orphans
        hits = cli(s.mcp_url, "search", "keep", "--vector", "[3, 1]", "-k", "1")[1]["results"]
        assert hits[0]["id"] == "k3", hits
        cli(s.mcp_url, "create-store", "new", "--dimension", "3")
        assert names(s.mcp_url) == ["keep", "new"]
    finally:
        s.stop()


def test_a_missing_store_error_lists_at_most_twenty_names(server):
    for i in range(22):
        cli(server.mcp_url, "create-store", f"s{i:02d}", "--dimension", "2")
    code, err = cli(server.mcp_url, "search", "nope", "--vector", "[1, 2]", ok=False)
    message = err["error"]["message"]
    assert code == 1 and err["error"]["code"] == "not_found", err
    assert "s00, s01" in message and "s19 and 2 more (list_stores)" in message and "s21" not in message, message


def test_texts_through_the_cli(server, tmp_path):
    url = server.mcp_url
    _, created = cli(url, "create-store", "notes", "--embedding", "all-MiniLM-L6-v2")
    assert created["dimension"] == 384 and created["embedding"]["model"] == "all-MiniLM-L6-v2", created
    (tmp_path / "notes.txt").write_text("The build server runs out of disk every Monday.\n\nBob is allergic to peanuts.\n")
    _, out = cli(url, "insert-texts", "notes", "The office closes at 6pm on Fridays.", "--file", str(tmp_path / "notes.txt"))
    assert out["inserted"] == 3 and len(out["ids"]) == 3, out
    _, found = cli(url, "search-text", "notes", "what food should Bob avoid?", "-k", "1")
    assert found["results"][0]["text"] == "Bob is allergic to peanuts.", found
    code, err = cli(url, "create-store", "bad", ok=False)
    assert code == 1 and err["error"]["code"] == "invalid_argument" and "dimension is required" in err["error"]["message"]
    p = subprocess.run([rvdb_bin(), "insert-texts", "notes", "--url", base_url(url)], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode != 0 and "no texts" in p.stderr, (p.returncode, p.stderr)
