"""Fixtures for the end-to-end tests: an S3 server (one per session, a fresh bucket per test), a Ray cluster
(one per session), and one of the repository's recipes, copied and run once per test module.

A module that uses the recipe fixtures names its recipe (RECIPE), the modules the recipe loads (FILES, copied
beside it from recipes/) and the `--set` arguments that keep its validate stages quick (QUICK).
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest
from harness import RECIPES, Project, Ran
from raycluster import RayCluster, local_cluster
from s3server import Bucket, S3Server


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    pytest.importorskip("moto.server", reason="moto[server] is part of the test extra")
    pytest.importorskip("s3fs", reason="s3fs is the remote extra")
    server = S3Server(tmp_path_factory.mktemp("moto"))
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def bucket(s3_server: S3Server) -> Bucket:
    return Bucket(s3_server, s3_server.new_bucket())


@pytest.fixture(scope="session")
def ray_cluster(s3_server: S3Server) -> Iterator[RayCluster]:
    pytest.importorskip("ray", reason="ray is the ray extra")
    with local_cluster(s3_server) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def recipe_project(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Project:
    """The module's RECIPE and FILES copied from recipes/, once per module: its runs share one cache."""
    module = request.module
    tmp = tmp_path_factory.mktemp(Path(module.RECIPE).stem)
    return Project.copy(tmp, module.RECIPE, *module.FILES, source=RECIPES)


@pytest.fixture(scope="module")
def run_recipe(request: pytest.FixtureRequest, recipe_project: Project) -> Callable[..., Ran]:
    """`pipeline run RECIPE QUICK ARGS --json` in the module's copy: the process and the run record."""
    module = request.module

    def run(*args: str) -> Ran:
        return recipe_project.run_json(module.RECIPE, *module.QUICK, *args, timeout=900)

    return run


@pytest.fixture(scope="module")
def good(run_recipe: Callable[..., Ran]) -> Ran:
    """The module's recipe run once as written, read by most of its tests (later runs find it cached)."""
    return run_recipe()
