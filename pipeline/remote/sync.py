"""Results between the local cache and a remote, record by record: `pull` a record's objects down, `push` a
record up (objects first, the record last), and `Uploads`, a run's write-through. Bytes move through
pipeline/remote/transfer.py; `Remote` keeps the record documents, trust and the give-up policy.
"""

from __future__ import annotations

import warnings
from typing import Any

from pipeline.cache.objects import ObjectStore
from pipeline.cache.records import StageRecord
from pipeline.faults import fault
from pipeline.remote.objects import RemoteObjects
from pipeline.remote.store import Remote, RemoteRecord, RemoteUnavailable
from pipeline.remote.transfer import named_objects, transfer


def pull(remote: Remote, found: RemoteRecord, local: ObjectStore) -> int:
    """Bring every object `found` names into the local store, each checked against its digest and the size
    the record lists; return the bytes downloaded. Raises BadObject (nothing of that object kept) or
    RemoteUnavailable."""
    return transfer(found.record.outputs.values(), RemoteObjects(remote), local, sizes=found.objects)


def push(remote: Remote, record: StageRecord, local: ObjectStore, sign: bool) -> int:
    """Upload `record`'s objects, then the record itself; return the bytes uploaded.

    `sign` is the caller's word that this process built the record; only then does a signer sign it. First
    writer wins: a record the remote serves already is not replaced (but see `Remote.serves`)."""
    if remote.read_only:
        return 0
    if remote.serves(record.key, signed=sign and remote.signer is not None, discovered=record.discovered):
        return 0
    objects = named_objects(record.outputs.values(), local)
    sent = transfer(record.outputs.values(), local, RemoteObjects(remote), sizes=objects)
    fault("upload", record.stage)  # every object is up, the record is not: a crash here must leave no record
    remote.put_record(record, objects, sign)
    return sent


class Uploads:
    """Write-through: each record this run built goes to the remote (objects, then the record, signed when a
    key is configured) on a background thread while later stages run; `wait` before the process exits."""

    def __init__(self, remote: Remote, local: ObjectStore):
        from concurrent.futures import ThreadPoolExecutor

        self.remote, self.local = remote, local
        self.pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="upload")
        self.futures: list[Any] = []

    def submit(self, record: StageRecord) -> None:
        if self.remote.signer is not None:
            self.remote.signer.ready()  # a bad key fails here, in the engine, not in an upload thread
        self.futures.append(self.pool.submit(self._push, record))

    def _push(self, record: StageRecord) -> None:
        try:
            push(self.remote, record, self.local, sign=True)
        except RemoteUnavailable:
            pass  # warned once by the remote; the local result stands
        except Exception as exc:  # noqa: BLE001 - an upload never fails the run: the local result stands
            warnings.warn(f"stage {record.stage} was not uploaded: {type(exc).__name__}: {exc}", stacklevel=1)

    def wait(self) -> None:
        for f in self.futures:
            f.result()
        self.pool.shutdown()
