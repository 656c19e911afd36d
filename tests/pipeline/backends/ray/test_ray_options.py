"""What a task needs, as Ray task options: plain data, decided without a cluster (pipeline.backends.ray.cluster)."""

from __future__ import annotations

import pytest

from pipeline.backends.ray.cluster import LABEL, placement_problem, task_options
from pipeline.backends.ray.driver import relay_options
from pipeline.backends.worker import Placement


def node(label: str | None = None, cpus: int = 4, gpus: int = 0, alive: bool = True) -> dict:
    resources = {"CPU": float(cpus), **({"GPU": float(gpus)} if gpus else {})}
    return {"Alive": alive, "Labels": {LABEL: label} if label else {}, "Resources": resources}


def test_a_plain_stage_takes_one_cpu_and_ray_never_retries_it() -> None:
    assert task_options(Placement(), [node(), node("H100", gpus=8)]) == {"num_cpus": 1, "max_retries": 0}


def test_a_target_is_a_label_selector_and_one_gpu_where_the_labelled_nodes_have_gpus() -> None:
    gpu = task_options(Placement(accelerator="H100"), [node("H100", gpus=8), node("L4")])
    assert gpu == {"num_cpus": 1, "max_retries": 0, "label_selector": {LABEL: "H100"}, "num_gpus": 1}
    labelled_cpu_only = task_options(Placement(accelerator="L4"), [node("H100", gpus=8), node("L4")])
    assert "num_gpus" not in labelled_cpu_only and labelled_cpu_only["label_selector"] == {LABEL: "L4"}


def test_a_timing_stage_asks_for_every_cpu_of_the_largest_matching_live_node() -> None:
    nodes = [node(cpus=8), node(cpus=16), node(cpus=64, alive=False), node("H100", cpus=32, gpus=8)]
    assert task_options(Placement(exclusive=True), nodes)["num_cpus"] == 32
    targeted = task_options(Placement(exclusive=True, accelerator="H100"), nodes + [node("H100", cpus=24)])
    assert targeted["num_cpus"] == 32 and targeted["num_gpus"] == 1


class _Cluster:
    def __init__(self, nodes: list[dict]):
        self._nodes = nodes

    def nodes(self) -> list[dict]:
        return self._nodes


def test_placement_names_what_the_cluster_offers_and_ignores_dead_nodes() -> None:
    cluster = _Cluster([node("L4"), node("H100", alive=False), node()])
    assert placement_problem(cluster, "L4") is None
    assert placement_problem(cluster, "H100") == "no node of the Ray cluster offers H100 (it has: L4)"


def test_the_progress_relay_takes_no_cpu_prefers_the_live_head_and_survives_its_node() -> None:
    pytest.importorskip("ray", reason="ray is the ray extra")
    head = {**node(cpus=0), "NodeID": "aa" * 28}
    head["Resources"]["node:__internal_head__"] = 1.0
    dead_head = {**head, "Alive": False, "NodeID": "bb" * 28}
    options = relay_options([{**node("H100"), "NodeID": "cc" * 28}, dead_head, head])
    assert options["num_cpus"] == 0 and options["max_restarts"] == -1 and options["max_task_retries"] == -1
    strategy = options["scheduling_strategy"]
    assert strategy.node_id == "aa" * 28 and strategy.soft
    assert "scheduling_strategy" not in relay_options([node("L4")])  # a cluster whose head is not listed
