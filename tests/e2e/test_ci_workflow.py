"""examples/ci/pipeline.yml, the GitHub Actions workflow users copy: valid against the workflow schema,
clean under zizmor (with every action hash-pinned), and keeping its promises about what a pull request
can reach. Offline: check-jsonschema's schema is built in, zizmor runs with --offline."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CI = ROOT / "examples" / "ci"
WORKFLOW = CI / "pipeline.yml"
ZIZMOR_CONFIG = CI / "zizmor.yml"

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


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job["steps"]]


def text(node: Any) -> str:
    return json.dumps(node)


TOKEN = re.compile(r"\s*(?:('[^']*')|(==|!=|&&|\|\||!|\(|\))|([A-Za-z_][\w.]*\(\))|([A-Za-z_][\w.]*))")


def runs(condition: str | None, event: tuple[str, str]) -> bool:
    """Evaluate a step's `if:` for one event: the small part of GitHub's expression language the
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


def running(workflow: dict[str, Any], event: tuple[str, str]) -> list[dict[str, Any]]:
    return [step for step in steps(workflow) if runs(step.get("if"), event)]


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
    (checkout,) = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/checkout@")]
    assert checkout["with"]["persist-credentials"] is False


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
        active = running(workflow, event)
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
    # The read-only steps are explicitly conditioned, so they cannot run on a push to main.
    pr_only = [s for s in running(workflow, PULL_REQUEST) if not runs(s.get("if"), PUSH_MAIN)]
    assert pipeline_steps(pr_only, "run") and pipeline_steps(pr_only, "status")


def test_the_signing_key_is_only_on_pushes_to_main(workflow: dict[str, Any]) -> None:
    signing = [step for step in steps(workflow) if "PIPELINE_REMOTE_SIGNING_KEY" in text(step)]
    assert signing
    for step in signing:
        assert "push" in step["if"], step.get("name")
        assert [event for event in EVENTS if runs(step["if"], event)] == [PUSH_MAIN], step.get("name")
    (build,) = pipeline_steps(running(workflow, PUSH_MAIN), "run")
    assert build in signing
    assert "--remote" in build["run"] and "--remote-read-only" not in build["run"]
    script = build["run"]
    # The key reaches the step as a secret in env, is written under umask 077 into $RUNNER_TEMP, and only
    # its path goes to pipeline.
    (secret_var,) = [k for k, v in build["env"].items() if "secrets.PIPELINE_REMOTE_SIGNING_KEY" in str(v)]
    assert script.index("umask 077") < script.index(f'"${secret_var}" >')
    assert "$RUNNER_TEMP" in script
    assert re.search(r'PIPELINE_REMOTE_SIGNING_KEY="\$\w+"', script)
    for step in steps(workflow):
        if "secrets." in text(step):
            assert step in signing or [e for e in EVENTS if runs(step["if"], e)] == [PUSH_MAIN], step.get("name")


def test_remote_settings(workflow: dict[str, Any]) -> None:
    (job,) = workflow["jobs"].values()
    assert job["env"]["PIPELINE_REMOTE"] == "${{ vars.PIPELINE_REMOTE }}"
    assert job["env"]["PIPELINE_REMOTE_TRUST"] == "keys/pipeline-remote.pub"


def test_both_resnet50_recipes_are_built(workflow: dict[str, Any]) -> None:
    (job,) = workflow["jobs"].values()
    recipes = job["strategy"]["matrix"]["recipe"]
    assert set(recipes) == {"resnet50_int8", "resnet50_fp32"}
    for recipe in recipes:
        assert (ROOT / "recipes" / f"{recipe}.yaml").is_file()
    assert job["env"]["RECIPE"] == "recipes/${{ matrix.recipe }}.yaml"


def test_summary_and_upload_run_even_after_a_failure(workflow: dict[str, Any]) -> None:
    (summary,) = pipeline_steps(steps(workflow), "summary")
    assert summary["if"] == "always()"
    assert '--output "$GITHUB_STEP_SUMMARY"' in summary["run"] and "--append" in summary["run"]
    (upload,) = [s for s in steps(workflow) if s.get("uses", "").startswith("actions/upload-artifact@")]
    assert upload["with"]["path"] == "artifacts/${{ matrix.recipe }}"
    assert upload["with"]["if-no-files-found"] == "warn"
    order = steps(workflow)
    assert order.index(summary) > max(order.index(s) for s in pipeline_steps(order, "run"))
