"""The holder's credentials: JWT VCs kept in one file beside the keys.

A file rather than the store, because credentials belong to the participant's identity (like
its key) and replicas that share a database also share the key volume.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

from connector.credentials.jwt_vc import Credential, CredentialError, read_credential


class Wallet:
    def __init__(self, path: Path) -> None:
        self._path = path
        self._lock = threading.Lock()
        self._tokens: list[str] = self._load()

    def _load(self) -> list[str]:
        try:
            data = json.loads(self._path.read_text())
        except FileNotFoundError:
            return []
        tokens = data.get("credentials", []) if isinstance(data, dict) else []
        return [t for t in tokens if isinstance(t, str)]

    def credentials(self) -> list[Credential]:
        out = []
        for token in self._tokens:
            try:
                out.append(read_credential(token))
            except CredentialError:
                continue
        return out

    def matching(self, kinds: set[str] | None = None) -> list[str]:
        """Tokens of the given types (all if none are asked for), expired ones included: the
        verifier judges validity and names what failed, rather than seeing nothing."""
        return [c.token for c in self.credentials() if not kinds or c.kind in kinds]

    def replace_from(self, issuer: str, tokens: list[str]) -> list[Credential]:
        """Keep `tokens` as everything `issuer` has issued to us (a renewal replaces)."""
        fresh = [read_credential(t) for t in tokens]
        with self._lock:
            kept = [t for t in self._tokens if read_credential(t).issuer != issuer]
            self._tokens = kept + [c.token for c in fresh]
            self._save()
        return fresh

    def _save(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self._path.with_suffix(f".{os.getpid()}.tmp")  # replicas may share the volume
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump({"credentials": self._tokens}, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self._path)
