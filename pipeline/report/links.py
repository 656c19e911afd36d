"""Links in `pipeline summary`'s document to the files a stage wrote: its plots, and what its Markdown links to.

A stage's Markdown links its own files relative to itself (validate's report.md embeds `plots/errors.svg`);
copied into the summary, such a link would resolve against wherever the summary is written. The engine
knows no kind, so the rule is generic: a link whose target is one of the stage's own files (a file output,
or a file inside a directory output) is re-pointed at that file in the stage's view
(artifacts/<recipe>/<stage>/, pipeline/cache/views.py), relative to the folder the document is read from;
every `.svg` among the stage's files that its Markdown does not embed is embedded after it. Other links
(URLs, anchors, files the stage did not write) are left as written.
"""

from __future__ import annotations

import os
import posixpath
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.cache.objects import BadObject

if TYPE_CHECKING:
    from pipeline.cache import Cache
    from pipeline.cache.records import StageRecord

PLOT_SUFFIX = ".svg"
# An inline link or image target: `](target)` or `](target "title")`; a target with spaces is written `<...>`.
_LINK = re.compile(r"(\]\()(<[^>\n]*>|[^)\s]+)((?:\s+\"[^\"\n]*\")?\))")


@dataclass(frozen=True)
class StageFiles:
    """A stage's files (paths inside its view, `/`-separated), where its view is, and where links start."""

    view: Path
    files: frozenset[str]
    base: Path

    @property
    def plots(self) -> list[str]:
        return sorted(f for f in self.files if f.lower().endswith(PLOT_SUFFIX))

    def link(self, file: str) -> str:
        """`file` (one of the stage's) as a link target from `base`: relative, `<...>` around spaces."""
        target = self.view.joinpath(*file.split("/"))
        try:
            text = Path(os.path.relpath(target, self.base)).as_posix()
        except ValueError:  # another drive (Windows): no relative path exists
            text = target.as_posix()
        return f"<{text}>" if any(c.isspace() for c in text) else text

    def rebase(self, text: str, md_path: str) -> tuple[str, set[str]]:
        """`text` (the stage's Markdown output at `md_path`) with each link to one of the stage's files
        re-pointed from `base`, and the files it links."""
        folder = posixpath.dirname(md_path)
        linked: set[str] = set()

        def sub(m: re.Match[str]) -> str:
            target = m.group(2).strip("<>")
            if "://" in target or target.startswith(("/", "#")):
                return m.group(0)
            own = posixpath.normpath(posixpath.join(folder, target))
            if own not in self.files:
                return m.group(0)
            linked.add(own)
            return m.group(1) + self.link(own) + m.group(3)

        return _LINK.sub(sub, text), linked

    def gallery(self, skip: set[str]) -> str:
        """The stage's plots its Markdown does not embed, one image each ("" when none)."""
        return "\n\n".join(f"![{p}]({self.link(p)})" for p in self.plots if p not in skip)


def stage_files(cache: Cache, view: Path, record: StageRecord, base: Path) -> StageFiles:
    """Every file of the record's outputs, as laid out in its view: a file output at its path, a directory
    output's entries under it (read from its manifest; an unreadable one lists nothing)."""
    files: set[str] = set()
    for out in record.outputs.values():
        if not out.is_dir:
            files.add(out.path)
            continue
        try:
            files.update(f"{out.path}/{e['path']}" for e in cache.objects.manifest(out.digest))
        except BadObject:
            continue
    return StageFiles(view, frozenset(files), base)
