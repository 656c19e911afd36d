"""Signed records: who may write results a trusted job will serve.

A remote record is signed with an Ed25519 key by the jobs allowed to publish
(a default-branch CI job holding the private key); a reader configured with the
public key (`PIPELINE_REMOTE_TRUST`, a PEM file that can be committed beside the
recipes) ignores records that are unsigned or whose signature does not verify.
The signature covers the canonical JSON of everything the record says: its key,
its outputs' digests and every object it names with its size.

`cryptography` is imported only when a key is loaded.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from pipeline.cache.hashing import canonical_json
from pipeline.errors import UsageError

ALGORITHM = "ed25519"


def _key_id(public_raw: bytes) -> str:
    return hashlib.sha256(public_raw).hexdigest()[:16]


def _read(path: Path, what: str, env: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UsageError(f"{what} {path} ({env}): {exc.strerror or exc}") from None


def _pem(path: Path, label: str, what: str, env: str) -> bytes:
    """The file's bytes, refused early (without importing `cryptography`) when it is not a PEM `label`."""
    data = _read(path, what, env)
    if b"-----BEGIN " not in data or f"{label}-----".encode() not in data:
        raise UsageError(f"{what} {path}: not a PEM {label.lower()}")
    return data


class Signer:
    """A private key: signs the records this process built. Parsed on first use (a cached run never does)."""

    def __init__(self, path: Path):
        self.path = path
        self._pem = _pem(path, "PRIVATE KEY", "signing key", "PIPELINE_REMOTE_SIGNING_KEY")
        self._key: Any = None
        self._key_id = ""

    @classmethod
    def load(cls, path: Path) -> "Signer":
        return cls(path)

    def ready(self) -> "Signer":
        """Parse the key now: a bad key is a usage error before anything is uploaded, not in an upload thread."""
        if self._key is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

            try:
                key = serialization.load_pem_private_key(self._pem, password=None)
            except (ValueError, TypeError) as exc:
                raise UsageError(f"signing key {self.path}: not an unencrypted PEM private key ({exc})") from None
            if not isinstance(key, Ed25519PrivateKey):
                raise UsageError(f"signing key {self.path}: a {type(key).__name__}, not an Ed25519 key")
            raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
            self._key, self._key_id = key, _key_id(raw)
        return self

    @property
    def key_id(self) -> str:
        return self.ready()._key_id

    def sign(self, body: dict[str, Any]) -> dict[str, str]:
        signature = self.ready()._key.sign(canonical_json(body).encode())
        return {"alg": ALGORITHM, "key_id": self.key_id, "value": base64.b64encode(signature).decode()}


class Verifier:
    """Trusted public keys by id: a record verifies when one of them signed exactly its body. Parsed on first
    use: a fully cached run never imports `cryptography`."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        self._pems = [_pem(p, "PUBLIC KEY", "trusted key", "PIPELINE_REMOTE_TRUST") for p in paths]
        self._keys: dict[str, Any] | None = None

    @classmethod
    def load(cls, paths: list[Path]) -> "Verifier":
        return cls(paths)

    @property
    def keys(self) -> dict[str, Any]:
        """Key id -> Ed25519PublicKey."""
        if self._keys is None:
            from cryptography.hazmat.primitives import serialization
            from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

            keys = {}
            for path, data in zip(self.paths, self._pems):
                try:
                    key = serialization.load_pem_public_key(data)
                except (ValueError, TypeError) as exc:
                    raise UsageError(f"trusted key {path}: not a PEM public key ({exc})") from None
                if not isinstance(key, Ed25519PublicKey):
                    raise UsageError(f"trusted key {path}: a {type(key).__name__}, not an Ed25519 key")
                keys[_key_id(key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))] = key
            self._keys = keys
        return self._keys

    def problem(self, body: dict[str, Any], signature: Any) -> str | None:
        """Why the signature does not make `body` trusted ("unsigned", ...), or None when it does."""
        from cryptography.exceptions import InvalidSignature

        if not isinstance(signature, dict) or not signature.get("value"):
            return "unsigned"
        key = self.keys.get(str(signature.get("key_id")))
        if signature.get("alg") != ALGORITHM or key is None:
            return f"signed by an untrusted key ({signature.get('alg')} {signature.get('key_id')})"
        try:
            key.verify(base64.b64decode(str(signature["value"]), validate=True), canonical_json(body).encode())
        except (InvalidSignature, ValueError):
            return "its signature does not match its contents"
        return None


def generate_keypair(private: Path, public: Path) -> str:
    """Write a new Ed25519 key pair as PEM files (the private one readable by its owner only); return its id."""
    import os

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    fd = os.open(private, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub = key.public_key()
    public.write_bytes(pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return _key_id(pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw))
