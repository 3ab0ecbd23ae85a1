"""Fixtures: real `rvdb` processes (serve / mcp-stdio) on loopback with their data in a temp dir.

The binary is $RVDB_BIN (tests/run.sh sets it) or target/release/rvdb. A process prints
`RVDB_READY grpc=<url> mcp=<url>` on stdout when it serves; fixtures wait for that line.
"""
import hashlib
import os
import pathlib
import signal
import subprocess
import threading

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]


def source_fingerprint() -> str:
    """The fingerprint of this checkout's sources, as `crates/rvdb/fingerprint.rs` computes it at build time."""
    files = [ROOT / "Cargo.toml", ROOT / "Cargo.lock"]
    for top in ("crates", "proto"):
        files += [p for p in (ROOT / top).rglob("*") if p.is_file() and p.suffix in (".rs", ".toml", ".proto", ".html", ".js", ".css")]
    rel = lambda p: "/".join(p.relative_to(ROOT).parts)
    h = hashlib.sha256()
    for f in sorted((f for f in files if f.is_file()), key=rel):
        h.update(rel(f).encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


_checked = {}


def rvdb_bin() -> str:
    """The binary under test; refused when it was built from other sources than this checkout's (stale)."""
    b = os.environ.get("RVDB_BIN") or str(ROOT / "target" / "release" / "rvdb")
    if not os.path.exists(b):
        pytest.fail(f"rvdb binary not found at {b}: build it (cargo build --release --workspace --all-targets) "
                    "or set RVDB_BIN")
    if b not in _checked:
        version = subprocess.run([b, "--version"], capture_output=True, text=True, timeout=30).stdout.strip()
        _checked[b] = f"(source {source_fingerprint()})" in version, version
    fresh, version = _checked[b]
    if not fresh:
        pytest.fail(f"{b} is stale: it reports {version!r}, but this checkout's sources have fingerprint "
                    f"{source_fingerprint()}; rebuild it (cargo build --release --workspace --all-targets)")
    return b


class Server:
    def __init__(self, data_dir, extra_args=(), env=None):
        self.data_dir = str(data_dir)
        self.backup_dir = str(data_dir) + "-backups"
        self.extra_args = list(extra_args)
        # no drain grace on SIGTERM: these servers have no load balancer in front (tests/rolling.rs tests drains)
        self.env = {**os.environ, "RVDB_LOG": "warn", "RVDB_DRAIN_GRACE_MS": "0", **(env or {})}
        self.proc = None
        self.mcp_url = None
        self.grpc_url = None

    def start(self, timeout=60):
        self.proc = subprocess.Popen(
            [rvdb_bin(), "serve", "--persistence-dir", self.data_dir, "--backup-dir", self.backup_dir,
             "--grpc-addr", "127.0.0.1:0", "--mcp-port", "0", "--gateway-grpc-addr", "127.0.0.1:0", *self.extra_args],
            stdout=subprocess.PIPE, stderr=None, env=self.env, text=True)
        ready = threading.Event()

        def read():
            for line in self.proc.stdout:
                if line.startswith("RVDB_READY"):
                    fields = dict(kv.split("=", 1) for kv in line.split()[1:])
                    self.grpc_url, self.mcp_url = fields["grpc"], fields["mcp"]
                    ready.set()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            self.proc.kill()
            raise RuntimeError("rvdb serve did not become ready")
        return self

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def server(tmp_path):
    s = Server(tmp_path / "data").start()
    yield s
    s.stop()


@pytest.fixture
def make_server(tmp_path):
    started = []

    def make(name="data", **kw):
        s = Server(tmp_path / name, **kw).start()
        started.append(s)
        return s
    yield make
    for s in started:
        s.stop()


class Proc:
    """One `rvdb <args>` process; `fields` holds the key=value pairs of its RVDB_READY line."""

    def __init__(self, args, timeout=60):
        self.args = list(args)
        self.proc = subprocess.Popen([rvdb_bin(), *self.args], stdout=subprocess.PIPE, stderr=None,
                                     env=dict(os.environ, RVDB_LOG="warn"), text=True)
        ready = threading.Event()
        self.fields = {}

        def read():
            for line in self.proc.stdout:
                if line.startswith("RVDB_READY"):
                    self.fields = dict(kv.split("=", 1) for kv in line.split()[1:])
                    ready.set()
        threading.Thread(target=read, daemon=True).start()
        if not ready.wait(timeout):
            self.proc.kill()
            raise RuntimeError(f"rvdb {args[0]} did not become ready")

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


@pytest.fixture
def cluster(tmp_path):
    """A cluster on loopback: 1 index manager, 3 storage nodes, 1 gateway (MCP over HTTP)."""
    manager = Proc(["manager", "--grpc-addr", "127.0.0.1:0", "--persistence-dir", str(tmp_path / "manager"),
                    "--heartbeat-interval", "200", "--node-timeout", "2000"])
    nodes = [Proc(["node", "--grpc-addr", "127.0.0.1:0", "--persistence-dir", str(tmp_path / f"n{i}"),
                   "--manager", manager.fields["grpc"], "--node-id", f"n{i}"]) for i in (1, 2, 3)]
    gateway = Proc(["gateway", "--manager", manager.fields["grpc"], "--mcp-port", "0",
                    "--gateway-grpc-addr", "127.0.0.1:0", "--backup-dir", str(tmp_path / "backups")])

    class Cluster:
        pass
    c = Cluster()
    c.manager, c.nodes, c.gateway, c.mcp_url = manager, nodes, gateway, gateway.fields["mcp"]
    yield c
    for p in [gateway, *nodes, manager]:
        p.kill()
