"""Hosts on one machine: Linux network namespaces joined by veth pairs to a bridge, on a /24 of
the benchmarking range 198.18.0.0/15 (RFC 2544) that no other interface here uses. The run
creates everything it uses and removes it at the end, also after a failure or Ctrl-C.
Needs root and iproute2."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True)


def missing_requirements() -> list[str]:
    """What this machine lacks to run hosts in namespaces (empty when it can)."""
    missing = []
    if os.geteuid() != 0:
        missing.append("root (network namespaces)")
    if shutil.which("ip") is None:
        missing.append("iproute2 (`ip`)")
    return missing


def free_subnet() -> int:
    """The third octet of a 198.18.X.0/24 that no interface on this machine has."""
    used = _ip("-o", "-4", "addr", "show").stdout
    candidates = [octet for octet in range(10, 250) if f" 198.18.{octet}." not in used]
    if not candidates:
        raise SystemExit("no free /24 left in 198.18.0.0/16 on this machine")
    return random.choice(candidates)  # noqa: S311 - not a secret: avoids two runs colliding


@dataclass
class Host:
    """One network namespace, with the processes the run started in it."""

    name: str
    namespace: str
    address: str
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self, role: str, command: Sequence[str], *, env: dict[str, str], log: Path, cwd: Path) -> None:
        """Runs `command` in this host's namespace, in a new session (so that `kill` takes the
        process and all its children at once, as a host dying would)."""
        out: IO[bytes] = open(log, "ab")  # noqa: SIM115 - handed to the child
        self.processes[role] = subprocess.Popen(
            ["ip", "netns", "exec", self.namespace, *command],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()

    def kill(self, role: str, sig: int = signal.SIGKILL) -> None:
        process = self.processes.pop(role, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def kill_all(self, sig: int = signal.SIGTERM) -> None:
        for role in list(self.processes):
            self.kill(role, sig)


class Network:
    """A bridge in this (the root) namespace at 198.18.X.1, and hosts at 198.18.X.N."""

    def __init__(self, octet: int | None = None):
        self.octet = octet if octet is not None else free_subnet()
        self.prefix = f"198.18.{self.octet}"
        self.bridge = f"cbr{self.octet}"
        self.gateway = f"{self.prefix}.1"
        self.hosts: list[Host] = []
        self._up = False

    def up(self) -> Network:
        _ip("link", "add", self.bridge, "type", "bridge")
        self._up = True
        _ip("addr", "add", f"{self.gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        return self

    def add_host(self, name: str, last_octet: int) -> Host:
        namespace = f"cb{self.octet}-{name}"
        outside, inside = f"cb{self.octet}{name}o"[:15], f"cb{self.octet}{name}i"[:15]
        host = Host(name=name, namespace=namespace, address=f"{self.prefix}.{last_octet}")
        self.hosts.append(host)
        _ip("netns", "add", namespace)
        _ip("link", "add", outside, "type", "veth", "peer", "name", inside)
        _ip("link", "set", inside, "netns", namespace)
        _ip("link", "set", outside, "master", self.bridge)
        _ip("link", "set", outside, "up")
        _ip("-n", namespace, "addr", "add", f"{host.address}/24", "dev", inside)
        _ip("-n", namespace, "link", "set", inside, "up")
        _ip("-n", namespace, "link", "set", "lo", "up")
        return host

    def down(self) -> None:
        for host in self.hosts:
            host.kill_all(signal.SIGKILL)
            # Deleting the namespace removes its end of the veth pair, and with it the other.
            _ip("netns", "del", host.namespace, check=False)
        self.hosts.clear()
        if self._up:
            _ip("link", "del", self.bridge, check=False)
            self._up = False
