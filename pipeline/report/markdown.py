"""`pipeline summary`: a recipe's Markdown outputs as one document, for a CI job summary ($GITHUB_STEP_SUMMARY).

Stages already write Markdown for people (`validate`'s report.md, `report.compare`'s compare.md); CI wants
them on the job's page. The engine knows no kind, so the rule is generic: every output whose path ends in
`.md`, of every stage the plan finds cached (its current key has a record whose objects verify). A stage
that is not built or stale gets a row saying so and no section: a summary never shows stale content. A
stage that failed under its current key (pipeline/cache/failures.py) gets a `failed` row with the error and the
time, and the Markdown reports it wrote before failing (a failed gate's report.md says why). Each
object is hashed again as it is read; one that is missing or does not match its digest is a warning and
its stage counts as not built.

Plots are linked, not copied (pipeline/report/links.py): an up-to-date stage's Markdown links to its own
files point at the stage's view, relative to where the document is read (`base`: --output's folder, else
the working directory), and every `.svg` among its outputs that its Markdown does not embed follows under
`## STAGE (KIND): plots`. The view is brought up to date first, as `pipeline show` does, so a link shows
the bytes summarized. A failed stage's reports have no view: their links stay as written.

"Up to date" is pipeline/run/freshness.py's rule, the one `pipeline status` uses: the result for the recipe
as it is now is in the cache. The lock file is `status`'s extra question (a `--set` variant never writes
it), not the content's.
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

from pipeline.cache.objects import BadObject
from pipeline.cache.views import view_if_local
from pipeline.errors import UsageError
from pipeline.report.links import stage_files
from pipeline.run.freshness import state
from pipeline.status import Status

if TYPE_CHECKING:
    from pipeline.cache import Cache
    from pipeline.cache.failures import FailureRecord
    from pipeline.cache.records import OutputRecord, StageRecord
    from pipeline.recipe.load import Recipe
    from pipeline.run.plan import Decision


@dataclass(frozen=True)
class Row:
    stage: str
    kind: str
    status: str  # up to date, not built, stale, unavailable, failed or gate failed
    why: str = ""


@dataclass(frozen=True)
class Summary:
    title: str
    rows: tuple[Row, ...]
    sections: tuple[tuple[str, str], ...]  # (heading, Markdown with its headings demoted)
    warnings: tuple[str, ...]

    @property
    def complete(self) -> bool:
        """Every selected stage that can be built here is up to date (so its Markdown is in)."""
        return all(r.status in (Status.UP_TO_DATE, Status.UNAVAILABLE) for r in self.rows)

    def markdown(self) -> str:
        lines = [f"# {self.title}", "", "| stage | kind | status | why |", "|---|---|---|---|"]
        lines += [f"| {r.stage} | {r.kind} | {r.status} | {_cell(r.why)} |" for r in self.rows]
        for heading, body in self.sections:
            lines += ["", heading, "", body.strip("\n")]
        return "\n".join(lines) + "\n"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def summarize(
    recipe: Recipe,
    cache: Cache,
    decisions: Iterable[Decision],
    stages: Iterable[str] = (),
    base: Path | None = None,
) -> Summary:
    """One row per decided stage (only `stages` if any are named), one section per `.md` output of each
    cached stage, and one for the plots it does not embed, in the plan's (topological) order; links to a
    stage's files are relative to `base` (default: the working directory)."""
    base = (base or Path.cwd()).resolve()
    selected = set(stages)
    rows, sections, warnings = [], [], []
    for d in decisions:
        if selected and d.stage not in selected:
            continue
        kind = recipe.stages[d.stage].kind
        current = state(recipe, cache, d)
        why = "; ".join(current.reasons)
        if current.status == Status.UNAVAILABLE:  # cannot run here: nothing to show, nothing missing either
            rows.append(Row(d.stage, kind.kind, Status.UNAVAILABLE, why))
            continue
        if d.status == Status.PULLED:  # the remote serves it; its reports, if any, were fetched by the caller
            rows.append(Row(d.stage, kind.kind, Status.UP_TO_DATE, "on the remote"))
            continue
        if current.status in (Status.FAILED, Status.GATE_FAILED) and d.failure is not None:
            rows.append(Row(d.stage, kind.kind, str(d.failure.status), why))  # with the reports it wrote
            reports = [(o.path, _read(cache, o)) for o in d.failure.reports.values() if o.path.endswith(".md")]
            for path, data in reports:
                if data is not None:
                    suffix = f": {path}" if len(reports) > 1 else ""
                    heading = f"## {d.stage} ({kind.kind}): {d.failure.status}{suffix}"
                    sections.append((heading, demote_headings(data.decode("utf-8", errors="replace"))))
            continue
        record = d.record if d.status == Status.CACHED else cache.records.get(d.key) if d.key else None
        if record is None:  # never built, or built from other inputs, params or code
            rows.append(Row(d.stage, kind.kind, current.status, why))
            continue
        if d.status == Status.CACHED:  # its `.md` file outputs, in declared order (a record's come back sorted)
            outs = [(n, record.outputs[n]) for n in kind.outputs if n in record.outputs]
            found = {n: _read(cache, out) for n, out in outs if out.path.endswith(".md") and not out.is_dir}
            bad = [(n, record.outputs[n]) for n, data in found.items() if data is None]
        else:  # the current key has a record, but the planner found some of its objects missing or damaged
            found = {}
            bad = [(n, out) for n, out in record.outputs.items() if not cache.objects.verify(out.digest, out.is_dir)]
        if bad or d.status != Status.CACHED:
            damage = [(n, out.path, _damage(cache, out.digest)) for n, out in bad]
            warnings += [
                f"stage {d.stage}: output {n} ({path}) {what}; counted as not built" for n, path, what in damage
            ]
            why = why or "; ".join(f"output {path} {what}" for _, path, what in damage)
            rows.append(Row(d.stage, kind.kind, Status.NOT_BUILT, why))
            continue
        rows.append(Row(d.stage, kind.kind, Status.UP_TO_DATE, "; ".join(_said(record))))
        texts = [(record.outputs[n].path, data.decode("utf-8", errors="replace")) for n, data in found.items() if data]
        own = stage_files(cache, cache.view_dir(recipe.name, d.stage), record, base)
        linked: set[str] = set()
        for path, text in texts:
            text, used = own.rebase(text, path)
            linked |= used
            suffix = f": {path}" if len(texts) > 1 else ""
            sections.append((f"## {d.stage} ({kind.kind}){suffix}", demote_headings(text)))
        gallery = own.gallery(linked)
        if gallery:
            sections.append((f"## {d.stage} ({kind.kind}): plots", gallery))
        if linked or gallery:
            try:
                view_if_local(cache, recipe.name, d.stage, record)
            except OSError as exc:
                warnings.append(f"stage {d.stage}: its view could not be updated ({exc}); links may show older files")
    return Summary(recipe.name, tuple(rows), tuple(sections), tuple(warnings))


def _said(record: StageRecord | FailureRecord) -> list[str]:
    """The stage's warnings, as they read in a row: `warning: calibrated on 4 samples ...`."""
    return [f"warning: {w}" for w in record.warnings]


def _read(cache: Cache, out: OutputRecord) -> bytes | None:
    """A file object's bytes, checked as read by the store: None when missing or not matching its digest."""
    try:
        return cache.objects.read_checked(out.digest)
    except BadObject:
        return None


def _damage(cache: Cache, digest: str) -> str:
    """The store's own verdict (`ObjectStore.problem`), worded for the warning line."""
    problem = cache.objects.problem(digest, is_dir=False)
    return "missing from the cache" if problem == "missing" else "corrupted in the cache (hash mismatch)"


_FENCE = re.compile(r" {0,3}(`{3,}|~{3,})")
_ATX = re.compile(r"( {0,3})(#{1,6})(?=[ \t]|$)")
_SETEXT = re.compile(r" {0,3}(=+|-+)[ \t]*")
_NOT_PARAGRAPH = re.compile(r"\s*([-*+>|]|\d+[.)])|    ")  # list items, quotes, tables, indented code


def demote_headings(text: str) -> str:
    """Every heading one level down (`#` -> `##`; `######` stays), outside fenced code blocks; setext
    headings (a paragraph underlined with === or ---) become ATX ones. A fence left open is closed, so it
    cannot swallow the sections after it."""
    out: list[str] = []
    fence = ""  # the open fence's marker, "" outside a fenced block
    para = -1  # index in `out` where the current paragraph starts, -1 outside one
    for line in text.splitlines():
        if fence:
            close = _FENCE.match(line)
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                fence = "" if not line[close.end() :].strip() else fence
            out.append(line)
            continue
        opening, atx, setext = _FENCE.match(line), _ATX.match(line), _SETEXT.fullmatch(line)
        if opening and not (opening.group(1)[0] == "`" and "`" in line[opening.end() :]):
            fence, para = opening.group(1), -1
            out.append(line)
        elif atx:
            out.append(atx.group(1) + "#" * min(len(atx.group(2)) + 1, 6) + line[atx.end() :])
            para = -1
        elif setext and para >= 0:
            level = 2 if setext.group(1)[0] == "=" else 3
            out[para:] = ["#" * level + " " + " ".join(p.strip() for p in out[para:])]
            para = -1
        else:
            if not line.strip() or (para < 0 and _NOT_PARAGRAPH.match(line)):
                para = -1
            elif para < 0:
                para = len(out)
            out.append(line)
    return "\n".join(out + ([fence] if fence else []))


def write_text(text: str, path: Path | None, append: bool = False) -> None:
    """`text` to stdout, or to `path`: appended (after a blank line, if the file has content) or atomically
    replacing it (temp file in the same folder + os.replace, keeping an existing file's mode)."""
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        if append:
            with open(path, "ab+") as f:
                f.seek(0, os.SEEK_END)
                sep = b""
                if f.tell():
                    f.seek(-1, os.SEEK_END)
                    sep = b"\n" if f.read(1) == b"\n" else b"\n\n"
                f.write(sep + text.encode("utf-8"))
            return
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
        except FileNotFoundError:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(text)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UsageError(f"--output {path}: cannot write: {exc.strerror or exc}") from None
