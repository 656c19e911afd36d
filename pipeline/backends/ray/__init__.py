"""Stages as Ray tasks on a cluster (`pipeline run --executor ray`).

A stage runs as a Ray task in a fresh worker process (`max_calls=1`: one
recipe's modules never stand in for another's). Nothing moves through a shared
filesystem: the task names its inputs by digest on the remote store, the node
fetches them, runs the kind and stores its outputs there, and returns their
digests; the recipe's folder (plugins, factories, dataset code, data files)
travels the same way, as one directory object the node fetches by digest.

Before it runs a kind, the node recomputes the kind's code digest and toolchain
and refuses when they differ from what the key was computed with, so a node
with another image never caches a result under someone else's key. The driver
writes (and signs) every record; nodes hold no signing key.

A stage that needs a GPU target is placed by Ray's label selector
(`ray.io/accelerator-type`); a target no node offers is `unavailable`, naming
what the cluster has. A node that dies mid-stage sends the stage to another
matching node (up to `NODE_RETRIES` times); a worker that crashes in native
code fails its stage, as with the local pool. A stage's progress reaches the
driver through `ProgressRelay`, an actor it long-polls beside its tasks. Ray is
imported only here.
"""
