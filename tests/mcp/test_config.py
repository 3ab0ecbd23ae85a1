"""The config file (`--config rvdb.toml`): the seed's keys and every other setting, precedence file < environment
< flags, unknown keys and invalid values refused naming the key, and `rvdb config show` telling where each value
came from. Against real `rvdb serve` processes."""
import json
import os
import subprocess

from conftest import Server, rvdb_bin
from test_cli import cli


def run(*args, env=None):
    return subprocess.run([rvdb_bin(), *args], capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, RVDB_LOG="warn", RUST_BACKTRACE="0", **(env or {})))


def test_the_file_sets_what_the_seed_names_and_the_environment_and_flags_win(tmp_path):
    config = tmp_path / "rvdb.toml"
    config.write_text('max_vector_stores = 2\ndefault_index_type = "hnsw"\nsync_interval = 1000\n'
                      'auto_backup_enabled = false\nallowed_hosts = ["localhost", "127.0.0.1"]\n')
    s = Server(tmp_path / "data", extra_args=["--config", str(config)]).start()
    try:
        created = cli(s.mcp_url, "create-store", "a", "--dimension", "2")[1]
        assert created["index"] == "hnsw", created
        cli(s.mcp_url, "create-store", "b", "--dimension", "2")
        code, err = cli(s.mcp_url, "create-store", "c", "--dimension", "2", ok=False)
        assert code == 1 and err["error"]["code"] == "limit_reached", err
    finally:
        s.stop()
    # the environment wins over the file
    s = Server(tmp_path / "data", extra_args=["--config", str(config)], env={"RVDB_MAX_VECTOR_STORES": "3"}).start()
    try:
        cli(s.mcp_url, "create-store", "c", "--dimension", "2")
    finally:
        s.stop()
    shown = run("config", "show", "--config", str(config), "--", "--max-vector-stores", "9",
                env={"RVDB_SYNC_INTERVAL": "5"})
    assert shown.returncode == 0, shown.stderr
    settings = json.loads(shown.stdout)["settings"]
    assert settings["max_vector_stores"] == {"value": "9", "source": "flag", "env": "RVDB_MAX_VECTOR_STORES"}
    assert settings["sync_interval"]["value"] == "5" and settings["sync_interval"]["source"] == "env"
    assert settings["default_index_type"]["value"] == "hnsw" and settings["default_index_type"]["source"] == "file"
    assert settings["allowed_hosts"]["value"] == ["localhost", "127.0.0.1"]
    assert settings["backup_dir"] == {"value": "backups", "source": "default", "env": "RVDB_BACKUP_DIR"}


def test_unknown_keys_and_bad_values_are_refused_naming_the_key(tmp_path):
    for text, says in [
        ("mcp_portt = 1\n", "unknown key 'mcp_portt' (did you mean mcp_port?)"),
        ('mcp_port = "eighty"\n', "key 'mcp_port' = \"eighty\": invalid value 'eighty' for '--mcp-port"),
        ('default_index_type = "ivf"\n', "key 'default_index_type'"),
        ("persistence_enabled = 3\n", "key 'persistence_enabled'"),
        ("[server]\nmcp_port = 1\n", "key 'server'"),
        ("mcp_port = \n", "is not valid TOML"),
    ]:
        config = tmp_path / "bad.toml"
        config.write_text(text)
        p = run("serve", "--config", str(config), "--persistence-dir", str(tmp_path / "d"))
        assert p.returncode != 0 and says in p.stderr and str(config) in p.stderr, (text, p.stderr)
    assert not (tmp_path / "d").exists(), "nothing starts on a bad config"
    p = run("serve", "--config", str(tmp_path / "missing.toml"))
    assert p.returncode != 0 and "missing.toml" in p.stderr, p.stderr


def test_the_example_file_is_valid_and_says_the_defaults():
    example = os.path.join(os.path.dirname(__file__), "..", "..", "deploy", "rvdb.toml")
    with_file = json.loads(run("config", "show", "--config", example).stdout)["settings"]
    without = json.loads(run("config", "show").stdout)["settings"]
    for key, s in with_file.items():
        if s["source"] == "file":
            assert s["value"] == without[key]["value"], (key, s, without[key])
