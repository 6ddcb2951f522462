"""The replay guard: token ids seen before they expire."""

from __future__ import annotations

import time
from typing import Protocol

from connector.store.core import Statements


class ReplayGuard(Protocol):
    def remember_jti(self, jti: str, expires_at: int) -> bool:
        """True the first time a token id is offered (until it expires), False after."""
        ...


class SeenTokens(Statements):
    def remember_jti(self, jti: str, expires_at: int) -> bool:
        # ON CONFLICT: of two replicas offered one token at once, exactly one accepts it.
        with self.transaction():
            self._run("delete from seen_tokens where expires_at < ?", [int(time.time())])
            added = self._run(
                "insert into seen_tokens (jti, expires_at) values (?, ?)"
                " on conflict (jti) do nothing",
                [jti, expires_at],
            )
        return added == 1
