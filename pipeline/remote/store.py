"""A shared remote cache on any fsspec filesystem (s3://, gs://, az://, file://).

Layout under the URL, as the local store's: `objects/<2 hex>/<62 hex>` and
`records/<2 hex>/<rest of key>.json`. A remote record is a document
`{schema, record, objects, signature}`: the stage record (with its provenance),
every object it names (directory manifests and their files) with its size, and
an Ed25519 signature over both (pipeline/remote/trust.py).

What it promises:
- read-through: an object is downloaded to a temporary name, its sha256
  checked, then moved into the local store; a manifest's paths are checked
  (no `..`, nothing absolute) before anything is written. A missing, short or
  corrupted object makes the record a miss, never a hit.
- write-through: objects first, the record last, so a record never names an
  object that is not there; an object counts as present only at its recorded
  size, so an upload killed halfway is re-sent, never served.
- a remote that cannot be reached is one warning; the run goes on locally.
  Nothing here is imported, and no connection is made, until a local miss or
  an upload needs the remote.
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.cache.hashing import sha256_bytes
from pipeline.cache.objects import BadObject, UnsafeManifest, checked_manifest
from pipeline.cache.records import StageRecord
from pipeline.errors import UsageError, one_line
from pipeline.remote.index import RemoteIndex
from pipeline.remote.trust import Signer, Verifier

SCHEMA = 1
TIMEOUT = 10.0  # seconds to connect, and to wait on a read, before a try fails (PIPELINE_REMOTE_TIMEOUT)
RETRIES = 2  # tries per request: a remote that does not answer costs at most about 2 x 2 x TIMEOUT, once


class RemoteUnavailable(Exception):
    """The remote could not be reached or answered with an error; the message is one line."""


@dataclass(frozen=True)
class RemoteRecord:
    """A record the remote can serve: every object it names is there at its recorded size."""

    record: StageRecord
    objects: dict[str, int]  # digest -> size, manifests and the files they list
    verified: bool  # signed by a trusted key (False when no key is configured)
    signer: str  # key id, or "" when unsigned
    remembered: bool = False  # served from this machine's index of the remote, without a request


@dataclass
class Transfer:
    """Bytes moved, for the run's summary."""

    downloaded: int = 0
    uploaded: int = 0
    objects_down: int = 0
    objects_up: int = 0


class Remote:
    """One remote store as a run sees it: lookups, pulls into the local store, pushes from it."""

    def __init__(
        self,
        url: str,
        read_only: bool = False,
        verifier: Verifier | None = None,
        signer: Signer | None = None,
        index: RemoteIndex | None = None,
    ):
        self.url = url.rstrip("/")
        self.read_only = read_only
        self.verifier = verifier
        self.signer = signer
        self.index = index  # what this machine saw on the remote (set by whoever holds the local cache)
        self.transfer = Transfer()
        self._fs: Any = None
        self._root = ""
        self._down: str | None = None  # why the remote was given up on, once
        self._rejected: dict[str, str] = {}  # key -> why this run will not take it from the remote
        self._untrusted = 0  # records ignored for want of a trusted signature

    # -- the filesystem --------------------------------------------------------
    @property
    def fs(self) -> Any:
        if self._fs is None:
            try:
                import fsspec
            except ImportError:
                raise UsageError("a remote cache needs fsspec: pip install '.[remote]'") from None
            protocol = self.url.split("://", 1)[0] if "://" in self.url else "file"
            options: dict[str, Any] = {}
            if protocol in ("s3", "s3a"):
                options = _s3_options()
            try:
                self._fs, self._root = fsspec.core.url_to_fs(self.url, **options)
            except ImportError as exc:
                raise UsageError(f"remote {self.url}: {exc}") from None
            except Exception as exc:  # noqa: BLE001 - a bad URL or backend configuration
                raise UsageError(f"remote {self.url}: {one_line(exc, 200)}") from None
            if protocol in ("s3", "s3a"):
                self._fs.retries = RETRIES  # s3fs's own retry loop, on top of botocore's
        return self._fs

    def _path(self, *parts: str) -> str:
        self.fs  # noqa: B018 - opening the filesystem resolves the root
        return "/".join([self._root.rstrip("/"), *parts]) if self._root else "/".join(parts)

    def object_path(self, digest: str) -> str:
        return self._path("objects", digest[:2], digest[2:])

    def record_path(self, key: str) -> str:
        return self._path("records", key[:2], f"{key[2:]}.json")

    @property
    def available(self) -> bool:
        return self._down is None

    def call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        """Run one filesystem call; an error of the connection gives the remote up for this run."""
        if self._down is not None:
            raise RemoteUnavailable(self._down)
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - botocore, aiohttp, OSError: all mean "cannot use it"
            self._down = f"remote {self.url} cannot be used ({what}: {one_line(exc, 200)})"
            warnings.warn(f"{self._down}; building locally", stacklevel=2)
            raise RemoteUnavailable(self._down) from None

    # -- lookups ----------------------------------------------------------------
    def lookup(self, key: str) -> RemoteRecord | None:
        """The remote's record for `key` when it can be served (trusted if a key is configured), else None.

        A record this machine saw there before (pipeline/remote/index.py) is served without a request,
        its signature checked again; one first read here is remembered."""
        if key in self._rejected:
            return None
        remembered = self.index.get(key) if self.index is not None else None
        if remembered is not None:
            found = self._servable(key, remembered, remembered=True)
            if found is not None:
                return found
        if self._down is not None:
            return None
        try:
            raw = self.call("read record", self.fs.cat_file, self.record_path(key))
        except (FileNotFoundError, RemoteUnavailable):
            return None
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            self._ignore(key, "unreadable (not a JSON object)")
            return None
        found = self._servable(key, doc)
        if found is None:
            return None
        try:
            for digest, size in found.objects.items():
                if not self.present(digest, size):
                    self._reject(key, f"object {digest[:12]} is missing or incomplete on the remote")
                    return None
        except RemoteUnavailable:
            return None
        if self.index is not None:
            self.index.put(key, doc)
        return found

    def _servable(self, key: str, doc: dict[str, Any], remembered: bool = False) -> RemoteRecord | None:
        """`doc` as a RemoteRecord when it is well formed, holds `key` and is trusted; else None, warned
        about unless `remembered` (a remembered document that fails is only a reason to ask the remote)."""
        ignore = (lambda *_a, **_k: None) if remembered else self._ignore
        try:
            body = {"schema": doc["schema"], "record": doc["record"], "objects": doc["objects"]}
            if doc["schema"] != SCHEMA:
                ignore(key, f"schema {doc['schema']}, this version reads {SCHEMA}")
                return None
            record = StageRecord.from_json(doc["record"])
            objects = {str(d): int(s) for d, s in doc["objects"].items()}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            ignore(key, f"unreadable ({type(exc).__name__})")
            return None
        if record.key != key:
            ignore(key, f"it holds key {record.key[:12]}")
            return None
        signature = doc.get("signature")
        if self.verifier is not None:
            problem = self.verifier.problem(body, signature)
            if problem is not None:
                ignore(key, problem, trust=True)
                return None
        named = {o.digest for o in record.outputs.values()}
        if not named <= set(objects):
            ignore(key, "its object list misses an output")
            return None
        signer = str(signature.get("key_id", "")) if isinstance(signature, dict) else ""
        return RemoteRecord(record, objects, self.verifier is not None, signer, remembered)

    def present(self, digest: str, size: int | None) -> bool:
        """The object is there (at `size` bytes, when given: an upload killed halfway is not)."""
        try:
            found = self.stored_size(digest)
        except FileNotFoundError:
            return False
        return size is None or found == size

    def _ignore(self, key: str, why: str, trust: bool = False) -> None:
        """A record this run will not use: warned about once per run, in one line for all of them."""
        self._rejected[key] = why
        if trust:  # one line for all of them: a pull-request cache full of unsigned records is not news
            if not self._untrusted:
                warnings.warn(
                    f"ignoring remote records not signed by a trusted key (first: {key[:12]}, {why}); "
                    "they build locally",
                    stacklevel=3,
                )
            self._untrusted += 1
        else:
            warnings.warn(f"ignoring remote record {key[:12]}: {why}; the stage builds locally", stacklevel=3)

    def _reject(self, key: str, why: str) -> None:
        self._rejected[key] = why
        warnings.warn(f"remote record {key[:12]} cannot be served: {why}; the stage builds locally", stacklevel=3)

    def reject(self, key: str, why: str) -> None:
        """Stop serving `key` for the rest of this run (a download failed its check), nor from the index."""
        self._reject(key, why)
        if self.index is not None:
            self.index.drop(key)

    # -- record documents ---------------------------------------------------------
    def put_record(self, record: StageRecord, objects: dict[str, int], sign: bool) -> None:
        """Write the record document (signed when `sign` and a key is configured); its objects must be up."""
        body = {"schema": SCHEMA, "record": record.to_json(), "objects": objects}
        doc = dict(body)
        if sign and self.signer is not None:
            doc["signature"] = self.signer.sign(body)
        fd, name = tempfile.mkstemp(prefix="pipeline-record-")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f, sort_keys=True, indent=1)
        try:
            self.upload(Path(name), self.record_path(record.key))
        finally:
            Path(name).unlink(missing_ok=True)
        if self.index is not None:
            self.index.put(record.key, doc)

    def stored_size(self, digest: str) -> int:
        """The size of an object on the remote; FileNotFoundError when it is not there."""
        return int(self.call("stat object", self.fs.info, self.object_path(digest))["size"])

    def serves(self, key: str, signed: bool, discovered: dict[str, str] | None = None) -> bool:
        """The remote already holds a usable record for `key` (a signed one, when we would sign; one built
        from the same files read by path, when `discovered` is given: else the newer build replaces it,
        except that an unsigned push never replaces a signed record)."""
        doc = self.read_record(key)
        try:
            objects = {str(d): int(s) for d, s in doc["objects"].items()} if doc is not None else None
            if doc is not None and discovered is not None and (doc["record"].get("discovered") or {}) != discovered:
                if signed or not isinstance(doc.get("signature"), dict):
                    return False
        except (KeyError, TypeError, ValueError, AttributeError):
            return False
        if doc is None or objects is None or (signed and not isinstance(doc.get("signature"), dict)):
            return False
        return all(self.present(d, size) for d, size in objects.items())

    def upload(self, src: Path, dest: str) -> None:
        """A local filesystem gets a temporary name and a rename; an object store's PUT is atomic already."""
        if _is_local(self.fs):
            tmp = f"{dest}.tmp-{uuid.uuid4().hex[:12]}"
            self.call("upload", self.fs.makedirs, dest.rsplit("/", 1)[0], exist_ok=True)
            try:
                self.call("upload", self.fs.put_file, str(src), tmp)
                self.call("upload", self.fs.mv, tmp, dest)
            finally:
                if self.fs.exists(tmp):
                    self.fs.rm_file(tmp)
        else:
            self.call("upload", self.fs.put_file, str(src), dest)

    def manifest(self, digest: str) -> list[dict[str, str]]:
        """A directory object's checked manifest; raises BadObject."""
        try:
            data = self.call("read manifest", self.fs.cat_file, self.object_path(digest))
        except FileNotFoundError:
            raise BadObject(f"manifest {digest[:12]} is missing on the remote") from None
        if sha256_bytes(data) != digest:
            raise BadObject(f"manifest {digest[:12]} from the remote is corrupted")
        try:
            return checked_manifest(data, digest)
        except UnsafeManifest as exc:
            raise BadObject(str(exc)) from None

    # -- listing and deleting (gc --remote, pipeline/cache/gc.py) ----------------------------------------
    def find(self, *parts: str) -> tuple[str, dict[str, dict[str, Any]]]:
        """Every file under `parts` of the store: the base path, and each file's path -> the backend's info."""
        base = self._path(*parts)
        try:
            return base, self.call("list", self.fs.find, base, detail=True)
        except FileNotFoundError:
            return base, {}

    def read_record(self, key: str) -> dict[str, Any] | None:
        try:
            doc = json.loads(self.call("read record", self.fs.cat_file, self.record_path(key)))
        except FileNotFoundError:
            return None
        except ValueError:
            return None
        return doc if isinstance(doc, dict) else None

    def delete_record(self, key: str) -> None:
        self.call("delete", self.fs.rm_file, self.record_path(key))
        if self.index is not None:
            self.index.drop(key)

    def delete_scratch(self, run: str) -> None:
        self.call("delete", self.fs.rm, self._path("scratch", run), recursive=True)

    def delete_all(self) -> None:
        """Remove everything under this store's URL (a run's scratch prefix); best effort."""
        try:
            self.fs.rm(self._path(), recursive=True)
        except Exception:  # noqa: BLE001 - cleanup only: gc --remote removes what is left
            pass

    def delete_object(self, digest: str) -> None:
        self.call("delete", self.fs.rm_file, self.object_path(digest))


def _is_local(fs: Any) -> bool:
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    return protocol in ("file", "local")


def _s3_options() -> dict[str, Any]:
    """Bounded timeouts and retries, on top of whatever the user configured for s3 (fsspec's config and
    FSSPEC_S3_* variables win: they are read by fsspec itself)."""
    import fsspec.config

    user = dict(fsspec.config.conf.get("s3", {}).get("config_kwargs", {}))
    try:
        timeout = float(os.environ.get("PIPELINE_REMOTE_TIMEOUT") or TIMEOUT)
    except ValueError:
        raise UsageError("PIPELINE_REMOTE_TIMEOUT must be a number of seconds") from None
    user.setdefault("connect_timeout", timeout)
    user.setdefault("read_timeout", timeout)
    user.setdefault("retries", {"max_attempts": RETRIES, "mode": "standard"})
    return {"config_kwargs": user}
