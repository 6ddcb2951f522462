"""Ed25519 key pair on disk, and its JWK form for the DID document."""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from connector.errors import ConfigError
from connector.files import FILE_MODE, private_dir


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class KeyPair:
    private: Ed25519PrivateKey

    @property
    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def public_jwk(self) -> dict[str, str]:
        raw = self.public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}

    def private_pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def generate() -> KeyPair:
    return KeyPair(Ed25519PrivateKey.generate())


def save(pair: KeyPair, path: Path) -> None:
    """Write the private key readable by the owner only."""
    private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
    os.fchmod(fd, FILE_MODE)  # whatever the umask
    with os.fdopen(fd, "wb") as fh:
        fh.write(pair.private_pem())


def load(path: Path) -> KeyPair:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError as exc:
        raise ConfigError(
            f"private key not found: {path} (run 'connector init', or 'connector serve"
            " --create-key' to make one at the default place on first start)"
        ) from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot read the private key {path}: {exc.strerror or exc} (running as uid"
            f" {os.getuid()}; the file must be readable by it)"
        ) from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not a readable PEM private key: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: expected an Ed25519 key")
    return KeyPair(key)


def public_key_from_jwk(jwk: dict[str, object]) -> Ed25519PublicKey:
    if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519" or not isinstance(jwk.get("x"), str):
        raise ValueError("verification method is not an Ed25519 OKP JWK")
    return Ed25519PublicKey.from_public_bytes(b64url_decode(str(jwk["x"])))
