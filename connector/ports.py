"""Free loopback ports for local set-ups (demo, tests, TCK runs)."""

from __future__ import annotations

import random
import socket

# Below Linux's ephemeral range (32768-60999): a port found free here is not taken a moment
# later by some outgoing connection, as a port handed out by bind(0) can be.
LOW, HIGH = 20000, 32000
# Handed out already: a set-up picks many ports before it starts anything that binds them,
# so "free now" alone would let two of its processes draw the same one.
_given: set[int] = set()


def free_port(host: str = "127.0.0.1") -> int:
    for _ in range(200):
        port = random.randint(LOW, HIGH)
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            _given.add(port)
            return port
    raise OSError(f"no free port between {LOW} and {HIGH} on {host}")
