"""A real Ray cluster on 127.0.0.1 (`ray.cluster_utils.Cluster`); the e2e conftest starts one per test session.

The head takes no tasks (num_cpus=0, as a KubeRay head is usually set up); two worker nodes carry
the `ray.io/accelerator-type` labels H100 and L4. They have no GPUs: the labels are what placement
reads, and the test kinds probe the label of the node they run on. Nodes inherit this process's
environment when they start, so the S3 endpoint and credentials of the session's moto server are set
before the cluster starts: workers reach the remote store as the CLI does.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Iterator

from s3server import S3Server

LABEL = "ray.io/accelerator-type"
NODE_ARGS = {"object_store_memory": 80 * 1024 * 1024, "include_dashboard": False}


@dataclass
class RayCluster:
    cluster: Any
    labelled: dict[str, Any] = field(default_factory=dict)  # accelerator type -> its node

    @property
    def address(self) -> str:
        return self.cluster.address

    def node_id(self, label: str) -> str:
        return self.labelled[label].node_id

    def add(self, label: str, cpus: int = 1, gpus: int = 0) -> Any:
        return self.cluster.add_node(num_cpus=cpus, num_gpus=gpus, labels={LABEL: label}, **NODE_ARGS)

    def find(self, node_id_prefix: str) -> Any:
        return next(n for n in self.cluster.list_all_nodes() if n.node_id.startswith(node_id_prefix))


@contextmanager
def local_cluster(s3: S3Server) -> Iterator[RayCluster]:
    """The cluster, its nodes started with `s3`'s endpoint and credentials in their environment; shut down after."""
    from ray.cluster_utils import Cluster

    env = {**s3.env, "RAY_USAGE_STATS_ENABLED": "0"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, **NODE_ARGS})
    try:
        made = RayCluster(cluster)
        for label in ("H100", "L4"):
            made.labelled[label] = made.add(label, cpus=2)
        cluster.wait_for_nodes()
        yield made
    finally:
        cluster.shutdown()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
