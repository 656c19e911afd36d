"""The shared remote cache against a real S3 server (moto on 127.0.0.1) through s3fs: no mock of fsspec.

Each test gets a fresh bucket; a "runner" is a fresh local cache (what a CI job starts with).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import threading
from pathlib import Path

import pytest
from harness import Project
from s3server import Bucket, free_port


def run(project: Project, bucket: Bucket, cache: str, *args: str, env: dict[str, str] | None = None):
    """`pipeline run toy.yaml --json` on the runner whose local cache is `cache`; (process, stage -> row)."""
    proc = project.cli(
        "run",
        "toy.yaml",
        "--remote",
        bucket.url,
        "--json",
        *args,
        env={**bucket.env, "PIPELINE_CACHE": str(project.root.parent / cache), **(env or {})},
    )
    rows = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]} if proc.stdout.strip() else {}
    return proc, rows


def statuses(rows: dict[str, dict]) -> dict[str, str]:
    return {name: row["status"] for name, row in rows.items()}


def records(bucket: Bucket) -> dict[str, dict]:
    """The remote's records by stage name."""
    out = {}
    for key in bucket.keys("cache/records/"):
        doc = json.loads(bucket.get(key))
        out[doc["record"]["stage"]] = {"s3key": key, **doc}
    return out


def keypair(tmp_path: Path, name: str) -> tuple[Path, Path]:
    from pipeline.remote.trust import generate_keypair

    private, public = tmp_path / f"{name}.pem", tmp_path / f"{name}.pub"
    generate_keypair(private, public)
    return private, public


def test_a_fresh_runner_is_served_entirely_by_the_remote(project: Project, bucket: Bucket) -> None:
    proc, rows = run(project, bucket, "runner1")
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(rows).values()) == {"ran"}
    built = project.runs()
    assert sorted(records(bucket)) == ["join", "other", "upper", "write"]

    proc, rows = run(project, bucket, "runner2")
    assert proc.returncode == 0, proc.stderr
    assert statuses(rows) == {"write": "pulled", "upper": "pulled", "other": "pulled", "join": "pulled"}
    assert project.runs() == built, "no stage executed on the second runner"
    # Only the target's outputs came down; its view holds the right bytes.
    assert rows["join"]["local"] and not rows["upper"]["local"]
    view = Path(rows["join"]["outputs"]["model"])
    assert (view / "a.txt").read_text() == "ABC" and (view / "sub" / "b.txt").read_text() == "xyz"
    assert not (project.root.parent / "runner2" / "toy" / "upper").exists()
    record = json.loads(proc.stdout)
    assert record["remote"]["downloaded"] > 0 and record["remote"]["uploaded"] == 0
    # The lock file names every stage, pulled or not: `status --remote` is satisfied, plain `status` is not.
    env = {**bucket.env, "PIPELINE_CACHE": str(project.root.parent / "runner2")}
    assert project.cli("status", "toy.yaml", "--remote", bucket.url, env=env).returncode == 0
    assert project.cli("status", "toy.yaml", env=env).returncode == 1
    # `show` of an intermediate brings it down.
    shown = project.cli("show", "toy.yaml", "upper", "--remote", bucket.url, env=env)
    assert shown.returncode == 0, shown.stderr
    assert Path(shown.stdout.split("\t")[1].strip()).read_text() == "ABC"


def test_a_stage_that_must_rebuild_downloads_the_intermediates_it_reads(project: Project, bucket: Bucket) -> None:
    assert run(project, bucket, "runner1")[0].returncode == 0
    recipe = project.recipe.read_text().replace('text: "xyz"', 'text: "xyz!"')
    project.write_recipe(recipe)
    proc, rows = run(project, bucket, "runner2")
    assert proc.returncode == 0, proc.stderr
    assert statuses(rows) == {"write": "pulled", "upper": "pulled", "other": "ran", "join": "ran"}
    assert rows["upper"]["local"] is False  # settled before join ran; join then fetched its object
    assert (Path(rows["join"]["outputs"]["model"]) / "a.txt").read_text() == "ABC"


def test_a_cached_rerun_with_a_warm_local_cache_makes_no_request(project: Project, bucket: Bucket) -> None:
    assert run(project, bucket, "runner1")[0].returncode == 0
    before = len(bucket.server.requests())
    proc, rows = run(project, bucket, "runner1")
    assert proc.returncode == 0 and set(statuses(rows).values()) == {"cached"}
    assert len(bucket.server.requests()) == before


def test_a_rerun_asks_the_remote_nothing_about_intermediates_it_left_there(project: Project, bucket: Bucket) -> None:
    """Bazel's "build without the bytes": what a run saw on the remote is remembered locally
    (pipeline/remote/index.py), so the next run reports those stages cached without a request."""
    assert run(project, bucket, "runner1")[0].returncode == 0
    assert set(statuses(run(project, bucket, "runner2")[1]).values()) == {"pulled"}
    before = len(bucket.server.requests())
    proc, rows = run(project, bucket, "runner2")
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(rows).values()) == {"cached"}
    assert rows["upper"]["local"] is False and "local" not in rows["join"]
    assert bucket.server.requests()[before:] == []
    assert "cached  upper (toy.upper) (outputs left on the remote)" in proc.stderr


@pytest.mark.parametrize("lost", [("upper",), ("write", "upper")])
def test_a_remembered_intermediate_the_remote_lost_is_rebuilt_with_its_own_parents(
    project: Project, bucket: Bucket, lost: tuple[str, ...]
) -> None:
    """The remote lost objects since this machine saw them (gc --remote, a bucket policy), and they are not
    here either: a stage that reads one rebuilds its stage here, and that stage its own lost parents first."""
    assert run(project, bucket, "runner1")[0].returncode == 0
    assert run(project, bucket, "runner2")[0].returncode == 0  # join downloaded, write and upper remembered
    docs = records(bucket)
    for stage in lost:
        digest = docs[stage]["record"]["outputs"]["model"]["digest"]
        bucket.server.client().delete_object(Bucket=bucket.name, Key=f"cache/objects/{digest[:2]}/{digest[2:]}")
        # join's copy of upper's bytes is the only one here: removed, as a local gc would
        (project.root.parent / "runner2" / "objects" / digest[:2] / digest[2:]).unlink(missing_ok=True)
    project.write_recipe(project.recipe.read_text().replace('text: "xyz"', 'text: "xyz!"'))
    proc, rows = run(project, bucket, "runner2")
    assert proc.returncode == 0, proc.stderr
    expected = {"write": "cached", "upper": "ran", "other": "ran", "join": "ran"} | {s: "ran" for s in lost}
    assert statuses(rows) == expected, proc.stderr
    assert proc.stderr.count("missing on the remote") == len(lost), proc.stderr
    assert (Path(rows["join"]["outputs"]["model"]) / "a.txt").read_text() == "ABC"


def test_a_corrupted_remote_object_is_detected_rebuilt_and_never_served(project: Project, bucket: Bucket) -> None:
    assert run(project, bucket, "runner1")[0].returncode == 0
    upper = records(bucket)["upper"]
    digest = upper["record"]["outputs"]["model"]["digest"]
    key = f"cache/objects/{digest[:2]}/{digest[2:]}"
    good = bucket.get(key)
    bucket.put(key, b"X" * len(good))  # same size: only the sha256 check can tell
    proc, rows = run(project, bucket, "runner2", "upper")
    assert proc.returncode == 0, proc.stderr
    assert statuses(rows)["upper"] == "ran"
    assert "corrupted" in proc.stderr and proc.stderr.count(digest[:12]) == 1
    assert Path(rows["upper"]["outputs"]["model"]).read_text() == "ABC"
    # Truncated: the size check makes it a miss before any download.
    bucket.put(key, good[:2])
    proc, rows = run(project, bucket, "runner3", "upper")
    assert proc.returncode == 0 and statuses(rows)["upper"] == "ran"
    assert "missing or incomplete" in proc.stderr


def test_a_manifest_with_a_path_outside_its_directory_is_refused(project: Project, bucket: Bucket) -> None:
    assert run(project, bucket, "runner1")[0].returncode == 0
    join = records(bucket)["join"]
    entries = [{"path": "../../escape.txt", "digest": "0" * 64}]
    data = json.dumps(entries, sort_keys=True, separators=(",", ":")).encode()
    import hashlib

    digest = hashlib.sha256(data).hexdigest()
    bucket.put(f"cache/objects/{digest[:2]}/{digest[2:]}", data)
    join["record"]["outputs"]["model"]["digest"] = digest
    join["objects"] = {digest: len(data)}
    bucket.put(join.pop("s3key"), json.dumps(join).encode())
    proc, rows = run(project, bucket, "runner2")
    assert proc.returncode == 0, proc.stderr
    assert statuses(rows)["join"] == "ran"
    assert "unsafe path" in proc.stderr
    assert not list(project.root.parent.rglob("escape.txt"))


@pytest.mark.parametrize("point", ["upload:upper"])
def test_kill_9_during_upload_leaves_no_record_without_its_objects(
    project: Project, bucket: Bucket, point: str
) -> None:
    proc, _ = run(project, bucket, "runner1", env={"PIPELINE_FAULT": point})
    assert proc.returncode == -signal.SIGKILL
    for doc in records(bucket).values():  # every record that made it names objects that are all there
        for digest, size in doc["objects"].items():
            assert len(bucket.get(f"cache/objects/{digest[:2]}/{digest[2:]}")) == size
    assert "upper" not in records(bucket)
    proc, rows = run(project, bucket, "runner2")
    assert proc.returncode == 0, proc.stderr
    assert statuses(rows)["upper"] in ("ran", "pulled")
    assert "upper" in records(bucket)


def test_an_unreachable_remote_is_one_warning_and_a_local_build(project: Project, bucket: Bucket) -> None:
    env = {**bucket.env, "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{free_port()}"}
    proc, rows = run(project, bucket, "runner1", env=env)
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(rows).values()) == {"ran"}
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "cannot be used" in warnings[0], proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_remote_that_never_answers_times_out(project: Project, bucket: Bucket) -> None:
    """A server that accepts connections and then says nothing: bounded by PIPELINE_REMOTE_TIMEOUT, no hang."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(sock.accept()[0])
            except OSError:
                pass

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        env = {
            **bucket.env,
            "FSSPEC_S3_ENDPOINT_URL": f"http://127.0.0.1:{sock.getsockname()[1]}",
            "PIPELINE_REMOTE_TIMEOUT": "0.5",
        }
        proc, rows = run(project, bucket, "runner1", env=env)
    finally:
        stop.set()
        thread.join()
        for c in held:
            c.close()
        sock.close()
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(rows).values()) == {"ran"}
    assert "cannot be used" in proc.stderr and "Traceback" not in proc.stderr


def test_read_only_mode_writes_nothing_to_the_server(project: Project, bucket: Bucket) -> None:
    assert run(project, bucket, "runner1")[0].returncode == 0
    project.write_recipe(project.recipe.read_text().replace('text: "xyz"', 'text: "pr change"'))
    before = len(bucket.server.requests())
    proc, rows = run(project, bucket, "runner2", "--remote-read-only")
    assert proc.returncode == 0, proc.stderr
    assert statuses(rows)["other"] == "ran" and statuses(rows)["write"] == "pulled"
    made = bucket.server.requests()[before:]
    assert made and not [r for r in made if not r.startswith(("GET ", "HEAD "))], made
    assert sorted(records(bucket)) == ["join", "other", "upper", "write"]  # still the first runner's four


def test_a_verifying_reader_ignores_unsigned_and_forged_records(
    project: Project, bucket: Bucket, tmp_path: Path
) -> None:
    trusted_key, trusted_pub = keypair(tmp_path, "trusted")
    other_key, _ = keypair(tmp_path, "other")
    verify = {"PIPELINE_REMOTE_TRUST": str(trusted_pub)}

    # Unsigned (a pull-request job wrote them, or an old version): ignored, one warning line for all of them.
    assert run(project, bucket, "unsigned-writer")[0].returncode == 0
    proc, rows = run(project, bucket, "reader1", "--remote-read-only", env=verify)
    assert proc.returncode == 0 and set(statuses(rows).values()) == {"ran"}
    assert proc.stderr.count("not signed by a trusted key") == 1, proc.stderr

    # Signed by the trusted key: served, and kept locally as verified.
    for key in bucket.keys("cache/records/"):
        bucket.server.client().delete_object(Bucket=bucket.name, Key=key)
    signing = {"PIPELINE_REMOTE_SIGNING_KEY": str(trusted_key)}
    assert run(project, bucket, "signed-writer", env=signing)[0].returncode == 0
    proc, rows = run(project, bucket, "reader2", env=verify)
    assert set(statuses(rows).values()) == {"pulled"}, proc.stderr
    kept = json.loads(next((project.root.parent / "reader2" / "records").glob("*/*.json")).read_text())
    assert kept["provenance"]["origin"] == "pulled" and kept["provenance"]["verified"] is True

    # Forged: a signed record whose contents were changed afterwards, and one signed by an untrusted key.
    docs = records(bucket)
    write = docs["write"]
    write["record"]["summary"]["chars"] = 999
    bucket.put(write.pop("s3key"), json.dumps(write).encode())
    upper = docs["upper"]
    from pipeline.remote.trust import Signer

    body = {k: upper[k] for k in ("schema", "record", "objects")}
    upper["signature"] = Signer.load(other_key).sign(body)
    bucket.put(upper.pop("s3key"), json.dumps(upper).encode())
    proc, rows = run(project, bucket, "reader3", "--remote-read-only", env=verify)
    assert proc.returncode == 0, proc.stderr
    assert statuses(rows)["write"] == "ran" and statuses(rows)["upper"] == "ran"
    assert statuses(rows)["other"] == "pulled"


def test_a_trusted_job_never_serves_what_it_pulled_unverified(project: Project, bucket: Bucket, tmp_path: Path) -> None:
    """The cache-poisoning path: a pull-request job's result pulled into a cache a trusted job then uses."""
    key, pub = keypair(tmp_path, "trusted")
    assert run(project, bucket, "pr-job")[0].returncode == 0  # unsigned results
    proc, rows = run(project, bucket, "shared", "--remote-read-only")  # pulled without verification
    assert set(statuses(rows).values()) == {"pulled"}
    env = {"PIPELINE_REMOTE_TRUST": str(pub), "PIPELINE_REMOTE_SIGNING_KEY": str(key)}
    proc, rows = run(project, bucket, "shared", env=env)
    assert proc.returncode == 0, proc.stderr
    # Neither the local copy of the target nor what the untrusted run remembered seeing on the remote.
    assert set(statuses(rows).values()) == {"ran"}, "the unverified local copy must not be served"
    signed = records(bucket)["join"]
    assert signed["signature"]["key_id"], "the trusted job's own build replaced the unsigned record"


def test_two_runners_pushing_the_same_recipe_at_once(project: Project, bucket: Bucket) -> None:
    env = {**bucket.env, "TOY_RUNLOG": str(project.runlog)}
    procs = [
        project.popen(
            "run", "toy.yaml", "--remote", bucket.url, env={**env, "PIPELINE_CACHE": str(project.root.parent / c)}
        )
        for c in ("runner1", "runner2")
    ]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    proc, rows = run(project, bucket, "runner3")
    assert proc.returncode == 0, proc.stderr
    assert set(statuses(rows).values()) == {"pulled"}
    assert (Path(rows["join"]["outputs"]["model"]) / "a.txt").read_text() == "ABC"


def test_push_and_pull_sync_explicitly(project: Project, bucket: Bucket) -> None:
    local = {"PIPELINE_CACHE": str(project.root.parent / "runner1")}
    assert project.cli("run", "toy.yaml", env=local).returncode == 0  # built with no remote
    assert records(bucket) == {}
    pushed = project.cli("push", "toy.yaml", "--remote", bucket.url, env={**bucket.env, **local})
    assert pushed.returncode == 0, pushed.stderr
    assert sorted(records(bucket)) == ["join", "other", "upper", "write"]
    assert all("signature" not in doc for doc in records(bucket).values()), "push never signs"
    env = {**bucket.env, "PIPELINE_CACHE": str(project.root.parent / "runner2")}
    pulled = project.cli("pull", "toy.yaml", "--remote", bucket.url, env=env)
    assert pulled.returncode == 0, pulled.stderr
    assert "4 of 4 stages local" in pulled.stdout
    # The lock file (committed beside the recipe) names these keys, and now they are local.
    assert project.cli("status", "toy.yaml", env=env).returncode == 0
    again = project.cli("run", "toy.yaml", "--json", env={**env, "TOY_RUNLOG": str(project.runlog)})
    assert {s["status"] for s in json.loads(again.stdout)["stages"]} == {"cached"}


def test_remote_usage_errors_are_one_line(project: Project, tmp_path: Path) -> None:
    env = {"PIPELINE_REMOTE": ""}
    proc = project.cli("pull", "toy.yaml", env=env)
    assert proc.returncode == 2 and "needs a remote" in proc.stderr
    proc = project.cli("run", "toy.yaml", "--remote", "file:///x", "--remote-trust", str(tmp_path / "nope.pub"))
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "nope.pub" in proc.stderr
    bad = tmp_path / "bad.pub"
    bad.write_text("not a key")
    proc = project.cli("run", "toy.yaml", "--remote", "file:///x", "--remote-trust", str(bad))
    assert proc.returncode == 2 and "not a PEM public key" in proc.stderr


def test_a_file_remote_uploads_by_rename(project: Project, tmp_path: Path) -> None:
    """file:// (a shared mount): the same promises, and no temporary name left behind."""
    remote = tmp_path / "remote"
    env1 = {"PIPELINE_CACHE": str(tmp_path / "c1")}
    proc = project.cli("run", "toy.yaml", "--remote", remote.as_uri(), env=env1)
    assert proc.returncode == 0, proc.stderr
    assert not [p for p in remote.rglob("*") if ".tmp-" in p.name]
    env2 = {"PIPELINE_CACHE": str(tmp_path / "c2")}
    proc = project.cli("run", "toy.yaml", "--remote", remote.as_uri(), "--json", env=env2)
    assert {s["status"] for s in json.loads(proc.stdout)["stages"]} == {"pulled"}
    shutil.rmtree(remote / "objects")
    proc = project.cli("run", "toy.yaml", "--remote", remote.as_uri(), "--json", env={"PIPELINE_CACHE": "c3"})
    assert {s["status"] for s in json.loads(proc.stdout)["stages"]} == {"ran"}
    assert os.path.isdir(project.root / "c3")


def test_gc_remote_keeps_what_lock_files_name_and_young_objects(project: Project, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    env = {"PIPELINE_CACHE": str(tmp_path / "c1")}
    assert project.cli("run", "toy.yaml", "--remote", remote.as_uri(), env=env).returncode == 0
    old_recipe = project.recipe.read_text()
    project.write_recipe(old_recipe.replace('text: "xyz"', 'text: "xyz2"'))
    assert project.cli("run", "toy.yaml", "--remote", remote.as_uri(), env=env).returncode == 0
    objects = sorted(p for p in (remote / "objects").rglob("*") if p.is_file())
    assert len(list((remote / "records").rglob("*.json"))) == 6  # 4 + the changed `other` and `join`

    # What a killed read-only cluster run left in its scratch prefix goes once past the grace period.
    left = remote / "scratch" / "20260101-000000-1" / "objects" / "ab"
    left.mkdir(parents=True)
    (left / "cdef").write_bytes(b"x" * 10)
    # Young objects are safe whatever names them; old records still go.
    gc = project.cli("gc", "--remote", remote.as_uri(), "--keep-days", "0", env=env)
    assert (left / "cdef").exists() and "scratch" not in gc.stdout
    assert gc.returncode == 0, gc.stderr
    assert "removed 2 records and 0 objects" in gc.stdout, gc.stdout
    assert sorted(p for p in (remote / "objects").rglob("*") if p.is_file()) == objects
    # Past the grace period the objects only the dropped records named go too: the old `other` output
    # and the old `join` manifest (its files are shared with the kept build).
    dry = project.cli("gc", "--remote", remote.as_uri(), "--keep-days", "0", "--grace-hours", "0", "-n", env=env)
    assert "would remove 0 records and 2 objects" in dry.stdout, dry.stdout
    assert sorted(p for p in (remote / "objects").rglob("*") if p.is_file()) == objects
    gc = project.cli("gc", "--remote", remote.as_uri(), "--keep-days", "0", "--grace-hours", "0", env=env)
    assert "removed 0 records and 2 objects" in gc.stdout, gc.stdout
    assert "removed 1 scratch prefixes" in gc.stdout and not (remote / "scratch" / "20260101-000000-1").exists()
    # What the lock file names is still served whole to a fresh runner; the old build is gone.
    fresh = project.cli("run", "toy.yaml", "--remote", remote.as_uri(), "--json", env={"PIPELINE_CACHE": "c2"})
    assert {s["status"] for s in json.loads(fresh.stdout)["stages"]} == {"pulled"}
    project.write_recipe(old_recipe)
    old = project.cli("run", "toy.yaml", "--remote", remote.as_uri(), "--json", env={"PIPELINE_CACHE": "c3"})
    old_status = {s["stage"]: s["status"] for s in json.loads(old.stdout)["stages"]}
    assert old_status == {"write": "pulled", "upper": "pulled", "other": "ran", "join": "ran"}


def test_plan_says_which_stages_the_remote_serves(project: Project, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    assert project.cli("run", "toy.yaml", "--remote", remote.as_uri(), env={"PIPELINE_CACHE": "c1"}).returncode == 0
    proc = project.cli("plan", "toy.yaml", "--json", "--remote", remote.as_uri(), env={"PIPELINE_CACHE": "c2"})
    assert {d["stage"]: d["status"] for d in json.loads(proc.stdout)} == dict.fromkeys(
        ("write", "upper", "other", "join"), "pulled"
    )
    table = project.cli("plan", "toy.yaml", "--remote", remote.as_uri(), env={"PIPELINE_CACHE": "c2"}).stdout
    assert "from remote" in table and "on the remote (unverified)" in table
    # Plain `plan` (no remote configured) and plain `status` look no further than the local cache.
    proc = project.cli("plan", "toy.yaml", "--json", env={"PIPELINE_CACHE": "c2", "PIPELINE_REMOTE": ""})
    assert {d["status"] for d in json.loads(proc.stdout)} == {"run", "waits"}
    assert (
        project.cli("status", "toy.yaml", env={"PIPELINE_CACHE": "c2", "PIPELINE_REMOTE": remote.as_uri()}).returncode
        == 1
    )


def test_a_cached_rerun_with_a_remote_and_trust_imports_no_remote_library(project: Project, tmp_path: Path) -> None:
    import subprocess
    import sys

    _, pub = keypair(tmp_path, "trusted")
    env = {
        **os.environ,
        "PIPELINE_CACHE": str(tmp_path / "c1"),
        "PIPELINE_REMOTE": (tmp_path / "remote").as_uri(),
        "PIPELINE_REMOTE_TRUST": str(pub),
    }
    assert project.cli("run", "toy.yaml", env=env).returncode == 0
    probe = (
        "import sys\nfrom pipeline.cli.main import main\nrc = main(['run', 'toy.yaml', '-q'])\n"
        "print(rc, sorted(m for m in ('fsspec', 's3fs', 'botocore', 'cryptography') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=project.root, env=env, capture_output=True, text=True)
    assert out.stdout.strip().splitlines()[-1] == "0 []", out.stdout + out.stderr


def test_a_deliverable_kind_comes_down_even_as_an_intermediate(project: Project, tmp_path: Path) -> None:
    """Engines are what a CI job uploads: served by the remote, they are downloaded even with stages below."""
    (project.root / "shipping.py").write_text(
        "from toystages import Write\n\n\nclass Ship(Write):\n    kind = 'toy.ship'\n    deliverable = True\n"
    )
    project.write_recipe(
        "name: toy\nplugins: [toystages, shipping]\nstages:\n"
        "  engine: {uses: toy.ship, with: {text: abc}}\n"
        "  plain: {uses: toy.write, with: {text: def}}\n"
        "  check: {uses: toy.join, inputs: {a: engine, b: plain}}\n"
    )
    remote = (tmp_path / "remote").as_uri()
    assert project.cli("run", "toy.yaml", "--remote", remote, env={"PIPELINE_CACHE": "c1"}).returncode == 0
    proc = project.cli("run", "toy.yaml", "--remote", remote, "--json", env={"PIPELINE_CACHE": "c2"})
    rows = {s["stage"]: s for s in json.loads(proc.stdout)["stages"]}
    assert {n: (r["status"], r["local"]) for n, r in rows.items()} == {
        "engine": ("pulled", True),
        "plain": ("pulled", False),
        "check": ("pulled", True),
    }
    assert Path(rows["engine"]["outputs"]["model"]).read_text() == "abc"


TARGETED = '''
import os
from dataclasses import dataclass

from pydantic import Field

from pipeline.stage import OutputSpec, Params, Stage


class EngineParams(Params):
    target: str = Field("H100", description="the GPU the result is for")


@dataclass(frozen=True)
class ToyGpu:
    """A hardware target: the GPU TOY_GPU names."""

    accelerator: str

    def identity(self):
        return {"target": self.accelerator}

    def mismatch(self):
        here = os.environ.get("TOY_GPU")
        return None if here == self.accelerator else f"needs a {self.accelerator} (here: {here})"


class Engine(Stage[EngineParams]):
    """Builds only on a node that has its target (here: TOY_GPU names the node's GPU)."""

    kind = "toy.engine"
    outputs = {"model": OutputSpec("engine.bin")}

    def target(self, params):
        return ToyGpu(params.target)

    def run(self, ctx):
        (ctx.outdir / "engine.bin").write_text("engine for " + ctx.params.target)
        return {}
'''


def test_a_runner_that_cannot_build_a_targeted_stage_is_served_it(project: Project, tmp_path: Path) -> None:
    """A CPU-only CI runner computes a declared target's key and is served the engine a GPU node built."""
    (project.root / "targeted.py").write_text(TARGETED)
    project.write_recipe("name: toy\nplugins: [targeted]\nstages:\n  engine: {uses: toy.engine}\n")
    remote = (tmp_path / "remote").as_uri()
    cpu = project.cli("run", "toy.yaml", "--remote", remote, env={"PIPELINE_CACHE": "cpu0", "TOY_GPU": ""})
    assert cpu.returncode == 4 and "needs a H100" in cpu.stderr  # nobody built it yet: unavailable here
    gpu = project.cli("run", "toy.yaml", "--remote", remote, env={"PIPELINE_CACHE": "gpu", "TOY_GPU": "H100"})
    assert gpu.returncode == 0, gpu.stderr
    served = project.cli("run", "toy.yaml", "--remote", remote, "--json", env={"PIPELINE_CACHE": "cpu1"})
    assert served.returncode == 0, served.stderr
    row = json.loads(served.stdout)["stages"][0]
    assert row["status"] == "pulled" and Path(row["outputs"]["model"]).read_text() == "engine for H100"
    # Cached here now: a rerun on the CPU runner needs neither the GPU nor the remote.
    again = project.cli("run", "toy.yaml", "--json", env={"PIPELINE_CACHE": "cpu1", "PIPELINE_REMOTE": ""})
    assert json.loads(again.stdout)["stages"][0]["status"] == "cached"
    forced = project.cli("run", "toy.yaml", "--force", env={"PIPELINE_CACHE": "cpu1", "PIPELINE_REMOTE": ""})
    assert forced.returncode == 4, "forcing a rebuild where it cannot be built is unavailable, not a failure"


def test_a_result_the_remote_serves_is_published_under_the_asking_recipes_names(
    project: Project, bucket: Bucket
) -> None:
    proc, _ = run(project, bucket, "runner1")
    assert proc.returncode == 0, proc.stderr
    text = project.recipe.read_text().replace("upper:", "shout:").replace("a: upper", "a: shout")
    project.write_recipe(text)
    env = {**bucket.env, "PIPELINE_CACHE": str(project.root.parent / "runner2")}
    shown = project.cli("show", "toy.yaml", "shout", "--remote", bucket.url, env=env)
    assert shown.returncode == 0, shown.stderr
    view = Path(shown.stdout.split("\t")[-1].strip())
    assert view == project.root.parent / "runner2" / "toy" / "shout" / "upper.txt"
    assert view.read_text() == "ABC"
    proc, rows = run(project, bucket, "runner3", "shout")
    assert rows["shout"]["status"] == "pulled" and rows["shout"]["local"]
    assert Path(rows["shout"]["outputs"]["model"]).parent.name == "shout"


def test_files_read_by_path_travel_with_the_record_and_are_checked_where_it_is_served(
    project: Project, bucket: Bucket
) -> None:
    (project.root / "tables.py").write_text(
        "from pathlib import Path\ndef make() -> str:\n    return (Path(__file__).parent / 'table.txt').read_text()\n"
    )
    (project.root / "table.txt").write_text("t1\n")
    project.write_recipe("name: toy\nplugins: [toystages]\nstages:\n  t: {uses: toy.call, with: {fn: 'tables:make'}}\n")
    proc, rows = run(project, bucket, "runner1")
    assert proc.returncode == 0, proc.stderr
    assert records(bucket)["t"]["record"]["discovered"] == {"file:table.txt": _sha("t1\n")}
    proc, rows = run(project, bucket, "runner2")
    assert rows["t"]["status"] == "pulled"
    (project.root / "table.txt").write_text("t2\n")  # runner3's checkout has another table
    proc, rows = run(project, bucket, "runner3")
    assert rows["t"]["status"] == "ran", "a record built from another table.txt is never served"
    assert rows["t"]["reasons"] == ["read file table.txt changed"]
    assert Path(rows["t"]["outputs"]["model"]).read_text() == "t2\n"
    # The newer build replaced the remote's record: a runner with this table is served it.
    assert records(bucket)["t"]["record"]["discovered"] == {"file:table.txt": _sha("t2\n")}
    proc, rows = run(project, bucket, "runner4")
    assert rows["t"]["status"] == "pulled"


def test_an_unsigned_push_never_replaces_a_signed_record_built_from_other_files(
    project: Project, bucket: Bucket, tmp_path: Path
) -> None:
    (project.root / "tables.py").write_text(
        "from pathlib import Path\ndef make() -> str:\n    return (Path(__file__).parent / 'table.txt').read_text()\n"
    )
    (project.root / "table.txt").write_text("t1\n")
    project.write_recipe("name: toy\nplugins: [toystages]\nstages:\n  t: {uses: toy.call, with: {fn: 'tables:make'}}\n")
    key, _ = keypair(tmp_path, "trusted")
    proc, _ = run(project, bucket, "runner1", env={"PIPELINE_REMOTE_SIGNING_KEY": str(key)})
    assert proc.returncode == 0, proc.stderr
    assert "signature" in records(bucket)["t"]
    (project.root / "table.txt").write_text("t2\n")
    env = {**bucket.env, "PIPELINE_CACHE": str(project.root.parent / "runner2")}
    assert project.cli("run", "toy.yaml", env=env).returncode == 0  # built here, no remote
    pushed = project.cli("push", "toy.yaml", "--remote", bucket.url, env=env)
    assert pushed.returncode == 0, pushed.stderr
    record = records(bucket)["t"]
    assert "signature" in record and record["record"]["discovered"] == {"file:table.txt": _sha("t1\n")}


def _sha(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode()).hexdigest()
