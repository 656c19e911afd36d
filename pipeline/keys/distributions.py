"""Which installed distribution provides a module, read from the dist-info folders pip leaves.

`importlib.metadata.packages_distributions()` reads every RECORD on the path
(0.3 s here); a key needs only the folders its modules live in, and the answer
for a folder is memoised by the folder's own stamp (installing or removing a
distribution changes it), so this runs once after each install.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def distribution_map(folder: Path) -> str:
    """JSON {top-level module: [distribution, version, "local" | "index"]} for the dist-infos in `folder`.

    "local": installed from a local folder or file (`direct_url.json` with a
    `file:` URL), where the version says nothing about the content, so the
    closure follows its modules as it does local code. A VCS install's version
    carries its commit. A top-level name several distributions share (a
    namespace package: `nvidia`, `google`) maps its subpackages to their owners,
    under `{"*": [every owner], "top.sub": owner}`.
    """
    claims: dict[str, list[tuple[Path, list[str]]]] = {}
    try:
        infos = sorted(p for p in folder.iterdir() if p.name.endswith(".dist-info") and p.is_dir())
    except OSError:
        return "{}"
    for info in infos:
        name, _, version = info.name[: -len(".dist-info")].partition("-")
        name = name.lower().replace("-", "_").replace(".", "_")  # installers spell names differently
        origin = "index"
        try:
            direct = json.loads((info / "direct_url.json").read_text())
            if "dir_info" in direct or str(direct.get("url", "")).startswith("file:"):
                origin = "local"
            elif isinstance(direct.get("vcs_info"), dict) and direct["vcs_info"].get("commit_id"):
                version = f"{version}+{direct['vcs_info'].get('vcs', 'vcs')}.{direct['vcs_info']['commit_id']}"
        except (OSError, ValueError, AttributeError):
            pass
        for top in _tops_of(info):
            claims.setdefault(top, []).append((info, [name, version, origin]))
    out: dict[str, Any] = {}
    for top, owners in claims.items():
        if len(owners) == 1:
            out[top] = owners[0][1]
            continue
        shared: dict[str, Any] = {"*": [entry for _, entry in owners]}
        for info, entry in owners:
            for sub in _subpackages_of(info, top):
                shared.setdefault(f"{top}.{sub}", entry)
        out[top] = shared
    return json.dumps(out, sort_keys=True)


def _subpackages_of(info: Path, top: str) -> list[str]:
    """Second-level names under `top` that a distribution's RECORD installs (`nvidia/cudnn/...` -> cudnn)."""
    try:
        lines = (info / "RECORD").read_text().splitlines()
    except OSError:
        return []
    subs = set()
    for line in lines:
        path = line.split(",", 1)[0].split("/")
        if len(path) > 2 and path[0] == top:
            subs.add(path[1])
        elif len(path) == 2 and path[0] == top and path[1].endswith(".py") and path[1] != "__init__.py":
            subs.add(path[1][:-3])
    return sorted(subs)


def _tops_of(info: Path) -> list[str]:
    """Top-level modules a dist-info provides: top_level.txt, else the first parts of RECORD's paths."""
    try:
        return (info / "top_level.txt").read_text().split()
    except OSError:
        pass
    try:
        lines = (info / "RECORD").read_text().splitlines()
    except OSError:
        return []
    tops = set()
    for line in lines:
        path = line.split(",", 1)[0]
        first = path.split("/", 1)[0]
        if first.endswith((".dist-info", ".data")) or first.startswith("..") or first == "__pycache__":
            continue
        if "/" in path:
            tops.add(first)
        elif first.endswith(".py"):
            tops.add(first[:-3])
        elif first.endswith((".so", ".pyd")):
            tops.add(first.split(".", 1)[0])
    return sorted(tops)
