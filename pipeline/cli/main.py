"""`pipeline`: the command line. Parses arguments, wires recipe -> graph -> plan -> executor -> reporters.

Exit codes: 0 ok, 1 a stage failed (or `status`: stale; `pull`: not all served), 2 recipe or usage
error, 3 a gate failed, 4 a requirement unmet, 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from pipeline.errors import EXIT_INTERRUPTED, EXIT_OK, PipelineError


def _parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    p = argparse.ArgumentParser(
        prog="pipeline", description="Build inference engines from YAML recipes, cached by content hash."
    )
    sub = p.add_subparsers(dest="command", required=True)
    commands: dict[str, argparse.ArgumentParser] = {}

    def recipe_cmd(name: str, help: str, targets: bool = True) -> argparse.ArgumentParser:
        c = commands[name] = sub.add_parser(name, help=help, description=help)
        c.add_argument("recipe", type=Path, help="recipe YAML file")
        if targets:
            c.add_argument("stages", nargs="*", help="build only these stages and their ancestors")
        c.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a recipe value, e.g. stages.quant.with.subset_size=10 (VALUE is YAML)",
        )
        c.add_argument("--cache-dir", help="cache root (default: $PIPELINE_CACHE or ./artifacts)")
        return c

    def remote_options(c: argparse.ArgumentParser, consulted: str) -> None:
        g = c.add_argument_group("remote cache")
        g.add_argument(
            "--remote",
            nargs="?",
            const="",
            metavar="URL",
            help=f"{consulted} (s3://bucket/prefix, gs://, az://, file://; bare: $PIPELINE_REMOTE)",
        )
        g.add_argument(
            "--remote-read-only",
            action="store_true",
            help="never write to the remote (also: PIPELINE_REMOTE_READ_ONLY=1)",
        )
        g.add_argument(
            "--remote-trust",
            metavar="PEM",
            help="serve only remote records signed by this Ed25519 public key (also: $PIPELINE_REMOTE_TRUST)",
        )
        g.add_argument(
            "--signing-key",
            metavar="PEM",
            help="sign the records this run builds with this Ed25519 private key ($PIPELINE_REMOTE_SIGNING_KEY)",
        )

    run = recipe_cmd("run", "build the recipe's stages, reusing cached results")
    run.add_argument(
        "--force",
        action="append",
        nargs="?",
        const="*",
        default=[],
        metavar="STAGE",
        help="rebuild STAGE even if cached (no STAGE: every selected stage)",
    )
    run.add_argument("--keep-going", "-k", action="store_true", help="after a failure, finish independent branches")
    run.add_argument("--jobs", "-j", type=int, default=1, help="stages run in parallel (worker processes)")
    run.add_argument("--in-process", action="store_true", help="run stages in this process (debugging; no isolation)")
    run.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: worker processes here (default); ray: every stage a task on a Ray cluster (needs --remote)",
    )
    run.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="the cluster: auto, HOST:PORT or ray://HOST:10001 (default: $PIPELINE_RAY_ADDRESS, $RAY_ADDRESS, auto)",
    )
    run.add_argument(
        "--skip-unavailable",
        action="store_true",
        help="exit 0 when stages that cannot run here (no GPU, missing extra) are skipped",
    )
    run.add_argument("--json", action="store_true", help="print the run record as JSON on stdout")
    run.add_argument("--quiet", "-q", action="store_true", help="no live progress, only the summary")

    remote_options(run, "shared cache to pull from and push to (default: $PIPELINE_REMOTE)")

    plan = recipe_cmd("plan", "show what would run and why, running nothing")
    plan.add_argument("--json", action="store_true")
    plan.add_argument("--skip-unavailable", action="store_true", help="leave out stages that cannot run here")

    remote_options(plan, "also say which stages the remote can serve (default: $PIPELINE_REMOTE)")

    status = recipe_cmd("status", "exit 0 if every stage is built and matches the lock file, else 1")
    status.add_argument("--json", action="store_true")
    status.add_argument("--skip-unavailable", action="store_true", help="ignore stages that cannot run here")
    remote_options(status, "count a stage the remote can serve as up to date (only with this flag)")

    pull = recipe_cmd("pull", "download stages' results from the remote cache into the local one")
    remote_options(pull, "the remote (default: $PIPELINE_REMOTE)")
    push = recipe_cmd("push", "upload the local cache's results of stages to the remote (unsigned)")
    remote_options(push, "the remote (default: $PIPELINE_REMOTE)")

    keygen = commands["keygen"] = sub.add_parser(
        "keygen", help="write an Ed25519 key pair for signing remote records (private key 0600)"
    )
    keygen.add_argument("private", type=Path, help="private key file to create (keep it in a CI secret)")
    keygen.add_argument("public", type=Path, help="public key file (commit it; PIPELINE_REMOTE_TRUST names it)")

    graph = recipe_cmd("graph", "print the stage graph", targets=False)
    graph.add_argument("--format", choices=("mermaid", "dot"), default="mermaid")

    show = recipe_cmd("show", "print a stage's output paths", targets=False)
    show.add_argument("stage")
    remote_options(show, "pull the stage's outputs from this remote if they are not here")

    summary = recipe_cmd("summary", "the Markdown outputs of the recipe's up-to-date stages as one document")
    summary.add_argument("--output", "-o", type=Path, metavar="FILE", help="write to FILE (default: stdout)")
    summary.add_argument("--append", action="store_true", help="append to FILE, e.g. $GITHUB_STEP_SUMMARY")
    remote_options(summary, "count what the remote serves as built, and fetch its reports (default: $PIPELINE_REMOTE)")

    gc = commands["gc"] = sub.add_parser("gc", help="remove objects no lock file or latest record references")
    gc.add_argument("--dry-run", "-n", action="store_true")
    gc.add_argument("--keep-variants", action="store_true", help="keep what --set runs built (dropped by default)")
    gc.add_argument("--trials", action="store_true", help="also drop searches' trials (kept by default: resumable)")
    gc.add_argument("--cache-dir")
    remote_options(gc, "collect the remote cache instead: records no known lock file names (bare: $PIPELINE_REMOTE)")
    gc.add_argument(
        "--keep-days", type=float, default=30.0, help="--remote: keep every record younger than this (default 30)"
    )
    gc.add_argument(
        "--grace-hours",
        type=float,
        default=24.0,
        help="--remote: never delete an object younger than this, whatever names it (default 24)",
    )

    verify = commands["verify"] = sub.add_parser("verify", help="rehash every object in the cache")
    verify.add_argument("--remove", action="store_true", help="delete corrupted objects (they rebuild on the next run)")
    verify.add_argument("--cache-dir")

    stages = commands["stages"] = sub.add_parser("stages", help="list stage kinds, or describe one")
    stages.add_argument("kind", nargs="?")
    stages.add_argument("--recipe", type=Path, help="also the kinds this recipe's `plugins:` define")
    stages.add_argument(
        "--markdown",
        action="store_true",
        help="print every kind's reference as Markdown (the README's stage reference)",
    )
    return p, commands


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    top, commands = _parser()
    if argv and argv[0] in commands:
        # Intermixed: `run recipe.yaml --set a=1 stage_b` keeps stage_b as a target.
        args = commands[argv[0]].parse_intermixed_args(argv[1:])
        args.command = argv[0]
    else:
        args = top.parse_args(argv)
    # The engine's warnings (an unreadable record it ignores) as one line each.
    warnings.formatwarning = lambda message, category, *_, **__: f"warning: {message}\n"
    try:
        return _dispatch(args)
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `pipeline stages | head`: the reader left; say nothing more
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so the interpreter's final flush does not fail again
        return EXIT_OK


# Each command's module under pipeline/cli/ (imported when that command runs).
_MODULES = {
    "run": "run",
    "plan": "inspect",
    "status": "inspect",
    "graph": "inspect",
    "show": "inspect",
    "summary": "inspect",
    "stages": "inspect",
    "pull": "remote",
    "push": "remote",
    "keygen": "remote",
    "gc": "maintain",
    "verify": "maintain",
}


def _dispatch(args: argparse.Namespace) -> int:
    import importlib

    module = importlib.import_module(f"pipeline.cli.{_MODULES[args.command]}")
    handler = getattr(module, f"cmd_{args.command}")
    return int(handler(args))


if __name__ == "__main__":
    sys.exit(main())
