"""examples/ci/pipeline.yml, the GitHub Actions workflow users copy: valid against the workflow schema,
clean under zizmor (with every action hash-pinned), and keeping its promises about what a pull request
can reach; and examples/kuberay/raycluster.yaml, the Ray cluster its `cluster` job sends the TensorRT
builds to. Offline: check-jsonschema's schema is built in, zizmor runs with --offline."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from stages.runtimes.tensorrt.targets import COMPUTE_CAPABILITY

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
WORKFLOW = CI / "pipeline.yml"
ZIZMOR_CONFIG = CI / "zizmor.yml"
RAYCLUSTER = ROOT / "examples" / "kuberay" / "raycluster.yaml"
ACCELERATOR = (
    "ray.io/accelerator-type"  # the node label a stage's target is placed by (pipeline/backends/ray/driver.py)
)

SHA_PIN = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40}$")
# The events the workflow runs on, as (github.event_name, github.ref).
PULL_REQUEST = ("pull_request", "refs/pull/7/merge")
PUSH_MAIN = ("push", "refs/heads/main")
DISPATCH_MAIN = ("workflow_dispatch", "refs/heads/main")
DISPATCH_BRANCH = ("workflow_dispatch", "refs/heads/topic")
EVENTS = [PULL_REQUEST, PUSH_MAIN, DISPATCH_MAIN, DISPATCH_BRANCH]


def tool(name: str) -> Path:
    """A console script installed in this interpreter's environment, or skip the test."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        pytest.skip(f"{name} is not installed next to {sys.executable} (pip install {name})")
    return path


def zizmor(workflow: Path) -> tuple[int, list[dict[str, Any]], str]:
    """Run zizmor offline with the example's config: exit code, findings (JSON), stderr."""
    proc = subprocess.run(
        [
            str(tool("zizmor")),
            "--offline",
            "--no-progress",
            "--format",
            "json",
            "--config",
            str(ZIZMOR_CONFIG),
            str(workflow),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=workflow.parent,
    )
    findings = json.loads(proc.stdout) if proc.stdout.strip() else []
    return proc.returncode, findings, proc.stderr


def variant(tmp_path: Path, old: str, new: str) -> Path:
    """A copy of the workflow with one piece of text replaced (which must be there)."""
    text = WORKFLOW.read_text()
    assert old in text, f"{old!r} not in {WORKFLOW}"
    copy = tmp_path / "pipeline.yml"
    copy.write_text(text.replace(old, new, 1))
    return copy


# ---- the real tools ----------------------------------------------------------------------------------


def test_workflow_matches_the_github_workflow_schema() -> None:
    proc = subprocess.run(
        [str(tool("check-jsonschema")), "--builtin-schema", "vendor.github-workflows", str(WORKFLOW)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_schema_check_can_fail(tmp_path: Path) -> None:
    broken = variant(tmp_path, "runs-on: ubuntu-latest", "runs-on: ubuntu-latest\n    steps-typo: []")
    proc = subprocess.run(
        [str(tool("check-jsonschema")), "--builtin-schema", "vendor.github-workflows", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0, proc.stdout


def test_zizmor_finds_nothing() -> None:
    code, findings, stderr = zizmor(WORKFLOW)
    assert findings == [], json.dumps(findings, indent=1)
    assert code == 0, stderr


def test_zizmor_rejects_a_tag_pinned_action(tmp_path: Path) -> None:
    checkout = re.search(r"actions/checkout@[0-9a-f]{40}", WORKFLOW.read_text())
    assert checkout
    code, findings, stderr = zizmor(variant(tmp_path, checkout.group(0), "actions/checkout@v4"))
    assert code != 0, stderr
    assert any("unpinned" in f["ident"] for f in findings), json.dumps(findings, indent=1)


def test_zizmor_rejects_an_expression_in_a_script(tmp_path: Path) -> None:
    injected = variant(
        tmp_path,
        "run: python -m pip install '.[all]'",
        "run: |\n          echo \"${{ github.event.pull_request.title }}\"\n          python -m pip install '.[all]'",
    )
    code, findings, stderr = zizmor(injected)
    assert code != 0, stderr
    assert any(f["ident"] == "template-injection" for f in findings), json.dumps(findings, indent=1)


# ---- the promises, on the parsed YAML -----------------------------------------------------------------


@pytest.fixture(scope="module")
def workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def triggers(workflow: dict[str, Any]) -> dict[str, Any]:
    # YAML 1.1 (PyYAML) reads the key `on` as the boolean True.
    return workflow["on"] if "on" in workflow else workflow[True]


def steps(workflow: dict[str, Any], job: str | None = None) -> list[dict[str, Any]]:
    """Every step of the workflow, or of one job."""
    jobs = [workflow["jobs"][job]] if job else workflow["jobs"].values()
    return [step for j in jobs for step in j["steps"]]


def text(node: Any) -> str:
    return json.dumps(node)


TOKEN = re.compile(r"\s*(?:('[^']*')|(==|!=|&&|\|\||!|\(|\))|([A-Za-z_][\w.]*\(\))|([A-Za-z_][\w.]*))")


def runs(condition: str | None, event: tuple[str, str]) -> bool:
    """Evaluate a step's or job's `if:` for one event: the small part of GitHub's expression language the
    workflow uses (github.event_name, github.ref, string literals, == != && || !, always())."""
    if condition is None:
        return True
    condition = condition.strip()
    if condition.startswith("${{") and condition.endswith("}}"):
        condition = condition[3:-2]
    values = {"github.event_name": event[0], "github.ref": event[1]}
    python, pos = [], 0
    while pos < len(condition.rstrip()):
        m = TOKEN.match(condition, pos)
        assert m and m.end() > pos, f"cannot read {condition!r} at {pos}"
        literal, op, call, name = m.groups()
        if literal:
            python.append(repr(literal[1:-1]))
        elif op:
            python.append({"&&": "and", "||": "or", "!": "not"}.get(op, op))
        elif call:
            assert call in ("always()", "success()"), f"unexpected function in {condition!r}"
            python.append("True")
        else:
            assert name in values, f"unexpected context {name!r} in {condition!r}"
            python.append(repr(values[name]))
        pos = m.end()
    return bool(eval(" ".join(python), {"__builtins__": {}}))  # only literals and operators, built above


def job_of(workflow: dict[str, Any], step: dict[str, Any]) -> dict[str, Any]:
    (job,) = [job for job in workflow["jobs"].values() if any(s is step for s in job["steps"])]
    return job


def step_runs(workflow: dict[str, Any], step: dict[str, Any], event: tuple[str, str]) -> bool:
    """A step runs for an event when its job's `if:` and its own both hold (a job's `needs` are assumed met)."""
    return runs(job_of(workflow, step).get("if"), event) and runs(step.get("if"), event)


def events_of(workflow: dict[str, Any], step: dict[str, Any]) -> list[tuple[str, str]]:
    return [event for event in EVENTS if step_runs(workflow, step, event)]


def running(workflow: dict[str, Any], event: tuple[str, str], job: str | None = None) -> list[dict[str, Any]]:
    return [step for step in steps(workflow, job) if step_runs(workflow, step, event)]


def pipeline_steps(stepset: list[dict[str, Any]], command: str) -> list[dict[str, Any]]:
    return [step for step in stepset if re.search(rf"\bpipeline {command}\b", step.get("run", ""))]


def test_triggers_and_least_privilege(workflow: dict[str, Any]) -> None:
    on = triggers(workflow)
    assert set(on) == {"pull_request", "push", "workflow_dispatch"}
    assert on["push"]["branches"] == ["main"]
    for event in ("pull_request", "push"):
        assert {"recipes/**", "models/**", "**/*.py", "pyproject.toml"} <= set(on[event]["paths"])
    assert workflow["permissions"] == {"contents": "read"}
    assert all("permissions" not in job for job in workflow["jobs"].values())
    assert "github.ref" in workflow["concurrency"]["group"]


def test_every_action_is_pinned_by_commit_with_its_version() -> None:
    lines = [line for line in WORKFLOW.read_text().splitlines() if re.match(r"\s*(- )?uses:", line)]
    assert len(lines) >= 3
    for line in lines:
        m = re.match(r"\s*(?:- )?uses: (\S+) # v\d+\.\d+\.\d+$", line)
        assert m, f"no '# vX.Y.Z' after the pin: {line.strip()}"
        assert SHA_PIN.match(m.group(1)), f"not pinned by a full commit SHA: {line.strip()}"


def test_every_uses_is_a_full_sha(workflow: dict[str, Any]) -> None:
    used = [step["uses"] for step in steps(workflow) if "uses" in step]
    assert {u.split("@")[0] for u in used} >= {"actions/checkout", "actions/setup-python", "actions/upload-artifact"}
    for uses in used:
        assert SHA_PIN.match(uses), uses


def test_checkout_keeps_no_credentials(workflow: dict[str, Any]) -> None:
    for name in workflow["jobs"]:
        (checkout,) = [s for s in steps(workflow, name) if s.get("uses", "").startswith("actions/checkout@")]
        assert checkout["with"]["persist-credentials"] is False, name


def test_no_expression_inside_a_script(workflow: dict[str, Any]) -> None:
    for step in steps(workflow):
        assert "${{" not in step.get("run", ""), f"{step.get('name')}: pass expressions through env:"


def test_secrets_are_never_set_for_the_whole_workflow_or_job(workflow: dict[str, Any]) -> None:
    assert "secrets." not in text(workflow.get("env", {}))
    for job in workflow["jobs"].values():
        assert "secrets." not in text(job.get("env", {}))
        assert "PIPELINE_REMOTE_SIGNING_KEY" not in text(job.get("env", {}))


def test_each_event_runs_one_status_and_one_build(workflow: dict[str, Any]) -> None:
    for event in EVENTS:
        active = running(workflow, event, "engines")
        assert len(pipeline_steps(active, "status")) == 1, event
        assert len(pipeline_steps(active, "run")) == 1, event
        (status,) = pipeline_steps(active, "status")
        assert "--remote" in status["run"] and status.get("continue-on-error") is True


def test_pull_requests_are_read_only_and_get_no_secret(workflow: dict[str, Any]) -> None:
    for event in (PULL_REQUEST, DISPATCH_MAIN, DISPATCH_BRANCH):
        active = running(workflow, event)
        for step in active:
            assert "secrets." not in text(step), f"{event}: {step.get('name')} reaches a secret"
            assert "PIPELINE_REMOTE_SIGNING_KEY" not in text(step), f"{event}: {step.get('name')}"
        (build,) = pipeline_steps(active, "run")
        assert "--remote-read-only" in build["run"] and "--skip-unavailable" in build["run"]
        assert "--executor" not in build["run"], f"{event}: only pushes to main reach the cluster"
    # The read-only steps are explicitly conditioned, so they cannot run on a push to main.
    pr_only = [s for s in running(workflow, PULL_REQUEST) if not step_runs(workflow, s, PUSH_MAIN)]
    assert pipeline_steps(pr_only, "run") and pipeline_steps(pr_only, "status")


def check_signing_step(build: dict[str, Any]) -> str:
    """The key reaches the step as a secret in env, is written under umask 077 into $RUNNER_TEMP, and only its
    path goes to pipeline. Returns the script."""
    script = build["run"]
    (secret_var,) = [k for k, v in build["env"].items() if "secrets.PIPELINE_REMOTE_SIGNING_KEY" in str(v)]
    assert script.index("umask 077") < script.index(f'"${secret_var}" >')
    assert "$RUNNER_TEMP" in script and "trap 'rm -f" in script
    assert f"unset {secret_var}" in script
    return script


def test_the_signing_key_is_only_on_pushes_to_main(workflow: dict[str, Any]) -> None:
    signing = [step for step in steps(workflow) if "PIPELINE_REMOTE_SIGNING_KEY" in text(step)]
    assert len(signing) == 2  # one per job: the local build and the cluster build
    for step in signing:
        assert events_of(workflow, step) == [PUSH_MAIN], step.get("name")
    (build,) = pipeline_steps(running(workflow, PUSH_MAIN, "engines"), "run")
    assert build in signing
    assert "--remote" in build["run"] and "--remote-read-only" not in build["run"]
    script = check_signing_step(build)
    assert re.search(r'PIPELINE_REMOTE_SIGNING_KEY="\$\w+"', script)
    for step in steps(workflow):
        if "secrets." in text(step):
            assert step in signing or events_of(workflow, step) == [PUSH_MAIN], step.get("name")


def test_remote_settings(workflow: dict[str, Any]) -> None:
    for job in workflow["jobs"].values():
        assert job["env"]["PIPELINE_REMOTE"] == "${{ vars.PIPELINE_REMOTE }}"
        assert job["env"]["PIPELINE_REMOTE_TRUST"] == "keys/pipeline-remote.pub"


def test_both_resnet50_recipes_are_built(workflow: dict[str, Any]) -> None:
    job = workflow["jobs"]["engines"]
    recipes = job["strategy"]["matrix"]["recipe"]
    assert set(recipes) == {"resnet50_int8", "resnet50_fp32"}
    for recipe in recipes:
        assert (ROOT / "recipes" / f"{recipe}.yaml").is_file()
    assert job["env"]["RECIPE"] == "recipes/${{ matrix.recipe }}.yaml"


def test_summary_and_upload_run_even_after_a_failure(workflow: dict[str, Any]) -> None:
    for name, job in workflow["jobs"].items():
        order = steps(workflow, name)
        (summary,) = pipeline_steps(order, "summary")
        assert summary["if"] == "always()"
        assert '--output "$GITHUB_STEP_SUMMARY"' in summary["run"] and "--append" in summary["run"]
        (upload,) = [s for s in order if s.get("uses", "").startswith("actions/upload-artifact@")]
        assert upload["if"] == "always()" and upload["with"]["if-no-files-found"] == "warn"
        assert order.index(summary) > max(order.index(s) for s in pipeline_steps(order, "run")), name
    assert workflow["jobs"]["engines"]["steps"][-1]["with"]["path"] == "artifacts/${{ matrix.recipe }}"
    assert workflow["jobs"]["cluster"]["steps"][-1]["with"]["path"] == "artifacts/resnet50_int8@*"  # the --set variant


# ---- the Ray cluster job and the KubeRay manifest ------------------------------------------------------


@pytest.fixture(scope="module")
def raycluster() -> dict[str, Any]:
    return yaml.safe_load(RAYCLUSTER.read_text())


def cluster_job_problems(workflow: dict[str, Any]) -> list[str]:
    """What is wrong with the job that builds on the Ray cluster (none: it is right)."""
    job = workflow["jobs"].get("cluster")
    if job is None:
        return ["no `cluster` job"]
    problems = []
    if not job.get("if") or [e for e in EVENTS if runs(job["if"], e)] != [PUSH_MAIN]:
        problems.append("the job does not run on pushes to main only")
    if job.get("needs") != "engines":
        problems.append("the job does not wait for `engines` (it would build the CPU stages again)")
    builds = pipeline_steps(steps(workflow, "cluster"), "run")
    if len(builds) != 1:
        return [*problems, f"{len(builds)} `pipeline run` steps, not 1"]
    (build,) = builds
    args = build["run"].split("pipeline run", 1)[1].split()
    if args[:1] != ['"$RECIPE"'] or job["env"].get("RECIPE") != "recipes/resnet50_int8.yaml":
        problems.append("it does not build recipes/resnet50_int8.yaml")
    if "--executor" not in args or args[args.index("--executor") + 1] != "ray":
        problems.append("no --executor ray")
    if "--remote" not in args or "--remote-read-only" in args:
        problems.append("it does not read and write the remote (--remote)")
    if "--signing-key" not in args or not args[args.index("--signing-key") + 1].startswith('"$'):
        problems.append("it does not sign with --signing-key FILE")
    env = build.get("env", {})
    if env.get("PIPELINE_RAY_ADDRESS") != "${{ secrets.PIPELINE_RAY_ADDRESS }}":
        problems.append("PIPELINE_RAY_ADDRESS is not the repository secret")
    if env.get("RAY_AUTH_MODE") != "token" or env.get("RAY_AUTH_TOKEN") != "${{ secrets.PIPELINE_RAY_AUTH_TOKEN }}":
        problems.append("the driver does not authenticate with the cluster's token")
    return problems


def test_the_cluster_job_builds_with_ray_on_pushes_to_main(workflow: dict[str, Any]) -> None:
    assert cluster_job_problems(workflow) == []
    (build,) = pipeline_steps(steps(workflow, "cluster"), "run")
    check_signing_step(build)
    assert (ROOT / "recipes" / "resnet50_int8.yaml").is_file()


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("--executor ray ", "", "no --executor ray"),
        ("--executor ray --remote --signing-key", "--executor ray --remote-read-only --signing-key", "--remote"),
        ("RAY_AUTH_MODE: token", "RAY_AUTH_MODE: disabled", "token"),
        ("    needs: engines\n", "", "engines"),
    ],
)
def test_the_cluster_job_check_can_fail(tmp_path: Path, old: str, new: str, problem: str) -> None:
    broken = yaml.safe_load(variant(tmp_path, old, new).read_text())
    problems = cluster_job_problems(broken)
    assert any(problem in p for p in problems), problems


def ray_container(group: dict[str, Any]) -> dict[str, Any]:
    return group["template"]["spec"]["containers"][0]


def has_token_auth(container: dict[str, Any]) -> bool:
    env = {e["name"]: e for e in container.get("env", [])}
    token = env.get("RAY_AUTH_TOKEN", {}).get("valueFrom", {}).get("secretKeyRef", {})
    return env.get("RAY_AUTH_MODE", {}).get("value") == "token" and bool(token.get("name") and token.get("key"))


def raycluster_problems(doc: dict[str, Any]) -> list[str]:
    """What keeps the manifest from being the cluster `--executor ray` needs (none: it is right)."""
    if doc.get("apiVersion") != "ray.io/v1" or doc.get("kind") != "RayCluster":
        return [f"not a ray.io/v1 RayCluster: {doc.get('apiVersion')} {doc.get('kind')}"]
    spec, problems = doc["spec"], []
    head = spec["headGroupSpec"]
    if head.get("rayStartParams", {}).get("num-cpus") != "0":
        problems.append('head: rayStartParams num-cpus is not "0" (stages could run on the head)')
    if head.get("serviceType", "ClusterIP") != "ClusterIP":
        problems.append(f"head: service type {head['serviceType']} (the head must not be public)")
    if not has_token_auth(ray_container(head)):
        problems.append("head: token authentication is off (RAY_AUTH_MODE=token, RAY_AUTH_TOKEN from a Secret)")
    if ray_container(head).get("envFrom"):
        problems.append("head: holds store credentials (it runs no stage)")
    groups = spec.get("workerGroupSpecs") or []
    if not groups:
        problems.append("no worker group")
    seen: set[str] = set()
    for group in groups:
        name, container = group.get("groupName"), ray_container(group)
        if "labels" in group.get("rayStartParams", {}):
            problems.append(f"{name}: labels in rayStartParams (KubeRay rejects them: use the group's labels)")
        accelerator = (group.get("labels") or {}).get(ACCELERATOR)
        if accelerator not in COMPUTE_CAPABILITY:
            problems.append(
                f"{name}: {ACCELERATOR}={accelerator!r} is not a GPU of stages/runtimes/tensorrt/targets.py"
            )
        elif accelerator in seen:
            problems.append(f"{name}: a second group of {accelerator}")
        seen.add(str(accelerator))
        gpus = container.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        if not str(gpus or "").isdigit() or int(gpus) < 1:
            problems.append(f"{name}: no nvidia.com/gpu limit")
        if not has_token_auth(container):
            problems.append(f"{name}: token authentication is off")
        if not any("secretRef" in source for source in container.get("envFrom", [])):
            problems.append(f"{name}: no store credentials (a Secret through envFrom)")
    if "SIGNING" in text(spec).upper():
        problems.append("the signing key reaches the cluster (only the driver signs)")
    images = {c["image"] for group in [head, *groups] for c in group["template"]["spec"]["containers"]}
    if len(images) != 1:
        problems.append(f"head and workers run different images: {sorted(images)}")
    if not all(str(spec.get("rayVersion")) in image for image in images):
        problems.append(f"an image's tag does not name rayVersion {spec.get('rayVersion')}")
    return problems


def test_the_raycluster_is_what_the_ray_executor_needs(raycluster: dict[str, Any]) -> None:
    assert raycluster_problems(raycluster) == []
    accelerators = {g["labels"][ACCELERATOR] for g in raycluster["spec"]["workerGroupSpecs"]}
    assert {"H100", "L4"} <= accelerators


def test_the_raycluster_matches_the_ci_driver(raycluster: dict[str, Any], workflow: dict[str, Any]) -> None:
    """Ray Client takes a driver only with the cluster's Ray and Python versions."""
    job = workflow["jobs"]["cluster"]
    assert job["env"]["RAY_VERSION"] == raycluster["spec"]["rayVersion"]
    (install,) = [s for s in job["steps"] if "pip install" in s.get("run", "")]
    assert '"ray[client]==$RAY_VERSION"' in install["run"] and "'.[all]'" in install["run"]
    (python,) = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python@")]
    py = "py" + python["with"]["python-version"].replace(".", "")
    for group in [raycluster["spec"]["headGroupSpec"], *raycluster["spec"]["workerGroupSpecs"]]:
        assert f"{raycluster['spec']['rayVersion']}-{py}" in ray_container(group)["image"]


def _workers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["workerGroupSpecs"]


def _env(container: dict[str, Any], name: str) -> dict[str, Any]:
    (entry,) = [e for e in container["env"] if e["name"] == name]
    return entry


BREAKAGES = {
    "head runs stages": (
        lambda d: d["spec"]["headGroupSpec"]["rayStartParams"].update({"num-cpus": "4"}),
        "num-cpus",
    ),
    "public head": (lambda d: d["spec"]["headGroupSpec"].update({"serviceType": "LoadBalancer"}), "public"),
    "unknown GPU": (lambda d: _workers(d)[0]["labels"].update({ACCELERATOR: "H1000"}), "tensorrt/targets.py"),
    "no label": (lambda d: _workers(d)[1].pop("labels"), "tensorrt/targets.py"),
    "labels in rayStartParams": (
        lambda d: _workers(d)[0]["rayStartParams"].update({"labels": f"{ACCELERATOR}=H100"}),
        "rayStartParams",
    ),
    "no GPU": (lambda d: ray_container(_workers(d)[1])["resources"]["limits"].pop("nvidia.com/gpu"), "nvidia.com/gpu"),
    "worker without auth": (
        lambda d: _env(ray_container(_workers(d)[1]), "RAY_AUTH_MODE").update(value="disabled"),
        "token",
    ),
    "head without auth": (
        lambda d: ray_container(d["spec"]["headGroupSpec"]).update(
            env=[e for e in ray_container(d["spec"]["headGroupSpec"])["env"] if e["name"] != "RAY_AUTH_TOKEN"]
        ),
        "token",
    ),
    "no store credentials": (lambda d: ray_container(_workers(d)[0]).pop("envFrom"), "store credentials"),
    "signing key on a worker": (
        lambda d: ray_container(_workers(d)[0])["env"].append({"name": "PIPELINE_REMOTE_SIGNING_KEY", "value": "/k"}),
        "signing key",
    ),
    "another image": (
        lambda d: ray_container(_workers(d)[0]).update(image="rayproject/ray:2.49.0-py310-gpu"),
        "images",
    ),
    "not a RayCluster": (lambda d: d.update(kind="RayJob"), "RayCluster"),
}


@pytest.mark.parametrize("breakage", sorted(BREAKAGES))
def test_the_raycluster_check_can_fail(raycluster: dict[str, Any], breakage: str) -> None:
    broken = copy.deepcopy(raycluster)
    change, problem = BREAKAGES[breakage]
    change(broken)
    problems = raycluster_problems(broken)
    assert any(problem in p for p in problems), problems
