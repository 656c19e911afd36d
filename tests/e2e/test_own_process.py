"""A kind that asks for `own_process` runs in a new worker, stopped when it ends; the stages around it share the
persistent one. Why: after TensorFlow, importing torch's triton or paddle in the same process crashes it (seen
in this project's suite), and workers are reused across stages."""

from __future__ import annotations

from harness import HEAD, Project, rows


def test_an_own_process_kind_gets_a_worker_of_its_own_and_retires_it(project: Project) -> None:
    project.write_recipe(
        HEAD
        + """stages:
  first: {uses: toy.pid}
  alone: {uses: toy.pid_alone, inputs: {after: first}}
  last: {uses: toy.pid, inputs: {after: alone}}
  alone_again: {uses: toy.pid_alone, inputs: {after: last}}
"""
    )
    proc, record = project.run_json("toy.yaml", "--jobs", "1")
    assert proc.returncode == 0, proc.stderr
    pid = {name: row["summary"]["pid"] for name, row in rows(record).items()}
    assert pid["first"] == pid["last"], pid  # the persistent worker, reused
    assert len({pid["first"], pid["alone"], pid["alone_again"]}) == 3, pid  # each own_process stage: a new one
