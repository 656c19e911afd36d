"""What enters the cache when a stage ran: its record, written last, so a record never names absent objects.

Run here, the worker stored the outputs in the local store and the record goes beside them (and to the
remote, on the upload thread). Run on a cluster node, the outputs are on the remote store: the driver
writes (and signs) the record there, and brings the outputs here only when they are wanted, as for a
pulled stage (always from a read-only run's scratch prefix, which goes away with the run).
"""

from __future__ import annotations

import datetime
from typing import Any

from pipeline.backends.worker import Outcome
from pipeline.cache import Cache
from pipeline.cache.records import StageRecord, provenance
from pipeline.faults import fault
from pipeline.keys.discovered import without_keyed
from pipeline.remote.sync import LeftOnRemote, Uploads
from pipeline.run.cluster import ClusterRun
from pipeline.run.plan import Decision
from pipeline.stage import Stage


class PublishError(Exception):
    """The worker's outputs are not where the record would say; the message is one line."""


class Publisher:
    def __init__(
        self,
        cache: Cache,
        recipe: str,
        run_id: str,
        cluster: ClusterRun | None,
        uploads: Uploads | None,
        left: LeftOnRemote,
        wanted: set[str],
    ):
        self.cache, self.recipe, self.run_id = cache, recipe, run_id
        self.cluster, self.uploads, self.left, self.wanted = cluster, uploads, left, wanted

    def publish(self, name: str, kind: type[Stage], decision: Decision, outcome: Outcome) -> StageRecord:
        """Check the outputs are stored, then write the record; raises PublishError."""
        outputs = outcome.outputs
        store: Any = self.cluster.objects if self.cluster is not None else self.cache.objects
        missing = [o.path for o in outputs.values() if not store.has(o.digest, o.is_dir)]
        if set(outputs) != set(kind.outputs) or missing:
            raise PublishError(f"stage {name}: the worker did not store {', '.join(missing) or 'every output'}")
        fault("publish", name)
        assert decision.key is not None and decision.components is not None, "a stage runs with a known key"
        record = StageRecord(
            key=decision.key,
            stage=name,
            kind=kind.kind,
            components=decision.components,
            outputs=outputs,
            summary=outcome.summary,
            seconds=round(outcome.seconds, 3),
            created=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            provenance=provenance(self.run_id, decision.components),
            discovered=without_keyed(outcome.discovered, decision.components),
            warnings=outcome.warnings,
        )
        if self.cluster is not None:
            return self._from_cluster(record, self.cluster)
        self.cache.records.put(record)
        self.cache.memo.flush()
        self.cache.records.set_latest(self.recipe, name, record.key)
        if self.uploads is not None:
            self.uploads.submit(record)
        return record

    def _from_cluster(self, record: StageRecord, cluster: ClusterRun) -> StageRecord:
        from pipeline.remote.store import BadObject, RemoteUnavailable

        here = record.stage in self.wanted or cluster.scratch
        try:
            found = cluster.publish(record)
            if here:
                cluster.store.pull(found, self.cache.objects)
        except (RemoteUnavailable, BadObject) as exc:
            raise PublishError(f"stage {record.stage}: {exc}") from None
        if here:
            self.cache.records.put(record)
            self.cache.records.set_latest(self.recipe, record.stage, record.key)
        else:
            self.left.hold(record.stage, found)
        return record
