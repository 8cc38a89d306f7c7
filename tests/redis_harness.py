"""A real ``redis-server`` on a free loopback port, for the tests that share state."""

from __future__ import annotations

import os
import random
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from litellm_circuit_breaker.testing import free_port

STARTUP_SEC = 10.0


def redis_server_binary() -> str:
    """The redis-server path; under CI a missing server fails the test instead of skipping it."""
    found = shutil.which("redis-server")
    if found:
        return found
    message = "redis-server is not installed (Debian: apt-get install redis-server)"
    if os.environ.get("CI"):
        pytest.fail(f"{message}; CI must have it (`make test` installs it as root)")
    pytest.skip(message)


class RedisServer:
    """One redis-server process without persistence; stop and start it on the same port."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.binary = redis_server_binary()
        self.port = port or free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own argv, no shell
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
                "--loglevel",
                "warning",
                *self.extra_args,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + STARTUP_SEC
        while not self.ping():
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}")
            if time.monotonic() > deadline:
                raise RuntimeError("redis-server did not answer PING")
            time.sleep(0.02)

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        process.kill()
        process.wait(timeout=10)


class RedisCluster:
    """A real Redis Cluster on loopback: three primaries with a replica each, made with
    ``redis-cli --cluster create``; a primary can be killed to force a failover."""

    NODE_TIMEOUT_MS = 1000

    def __init__(self, workdir: Path) -> None:
        self.nodes = [RedisServer(workdir / str(n), _cluster_port()) for n in range(6)]
        for node in self.nodes:
            node.workdir.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        cli = shutil.which("redis-cli")
        if cli is None:
            pytest.skip("redis-cli is not installed (Debian: apt-get install redis-tools)")
        for node in self.nodes:
            node.extra_args = [
                "--cluster-enabled", "yes",
                "--cluster-config-file", str(node.workdir / "nodes.conf"),
                "--cluster-node-timeout", str(self.NODE_TIMEOUT_MS),
                "--repl-diskless-sync-delay", "0",  # replicas in sync at once, not in 5 s
            ]  # fmt: skip
            node.start()
        subprocess.run(  # noqa: S603 - our own argv, no shell
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", "1", "--cluster-yes"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        self.wait_ok()
        # A replica that never synced cannot be promoted: wait until each one has.
        deadline = time.monotonic() + 60.0
        while time.monotonic() < deadline:
            roles = [self.command(n, "INFO", "replication") for n in self.nodes]
            replicas = [r for r in roles if "role:slave" in r]
            if len(replicas) == 3 and all("master_link_status:up" in r for r in replicas):
                return
            time.sleep(0.1)
        raise RuntimeError("the replicas never synced")

    def wait_ok(self, within: float = 60.0) -> None:
        """Until every live node says ``cluster_state:ok`` and agrees on all 16384 slots."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            infos = [self.command(n, "CLUSTER", "INFO") for n in self.nodes if n.process]
            if all("cluster_state:ok" in i and "cluster_slots_ok:16384" in i for i in infos):
                return
            time.sleep(0.1)
        raise RuntimeError("the cluster never became ok")

    def command(self, node: RedisServer, *args: str) -> str:
        cli = shutil.which("redis-cli")
        assert cli is not None
        done = subprocess.run(  # noqa: S603 - our own argv, no shell
            [cli, "-p", str(node.port), *args],
            check=False, capture_output=True, text=True, timeout=10,
        )  # fmt: skip
        return done.stdout

    def primary_of(self, key: str) -> RedisServer:
        """The live node that serves ``key``'s slot as primary, as the cluster sees it now."""
        live = [n for n in self.nodes if n.process]
        slot = int(self.command(live[0], "CLUSTER", "KEYSLOT", key))
        # CLUSTER NODES lines: id ip:port@bus flags primary-id ping pong epoch link slots...
        for line in self.command(live[0], "CLUSTER", "NODES").splitlines():
            fields = line.split()
            if len(fields) < 9 or "master" not in fields[2] or "fail" in fields[2]:
                continue
            port = int(fields[1].split("@")[0].rsplit(":", 1)[1])
            for span in fields[8:]:
                start, _, end = span.partition("-")
                if start.isdigit() and int(start) <= slot <= int(end or start):
                    found = next((n for n in live if n.port == port), None)
                    if found is not None:
                        return found
        raise RuntimeError(f"no live primary serves slot {slot}")

    def wait_promoted(self, key: str, within: float = 60.0) -> RedisServer:
        """After its primary was killed: until a live node serves ``key``'s slot as primary."""
        deadline = time.monotonic() + within
        while True:
            try:
                promoted = self.primary_of(key)
            except RuntimeError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
                continue
            self.wait_ok(max(1.0, deadline - time.monotonic()))
            return promoted

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


def _cluster_port() -> int:
    """A free loopback port whose cluster bus port (port + 10000) is free and valid too."""
    for _ in range(200):
        port = random.randint(20_000, 45_000)
        if all(_free(p) for p in (port, port + 10_000)):
            return port
    raise RuntimeError("no free port pair for a cluster node")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
