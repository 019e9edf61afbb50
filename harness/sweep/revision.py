"""The commit the code came from: `git_revision` asks git, and answers for a copy that travels without its history.

A measurement records the git SHA of the code that took it (harness.sweep.metadata). A checkout sent to another machine
without `.git` (the GPU machine of `archscale campaign`) cannot ask git, so `write_stamp` records, here, the commit and
the SHA-256 of every tracked file outside results/, and `stamped_revision` checks them there: the copy is that commit
where every file matches, and dirty where any differs or is missing. Only a clean checkout can be stamped.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from perfmodel.errors import ArchscaleInputError

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_revision(repo: Path = REPO_ROOT) -> dict:
    """{"git_sha": full SHA or None, "git_dirty": bool or None} for the checkout the code runs from
    (dirty = tracked files outside results/ differ from the commit). A copy without its git history (sent to a GPU
    machine) answers from its source stamp (`stamped_revision`), where it has one."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            # Uncommitted code changes make a run dirty; results being written by this very run do not.
            ["git", "status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)results"],
            cwd=repo,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return stamped_revision(repo) or {"git_sha": None, "git_dirty": None}
    return {"git_sha": sha, "git_dirty": bool(status.strip())}


STAMP_RELATIVE_PATH = Path(".campaign") / "source.json"  # git-ignored; the campaign carries it to the GPU machine


def _git(repo: Path, *args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True, timeout=30, check=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise ArchscaleInputError(f"{repo}: cannot read the git checkout ({exc})") from None


def _sha256(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def write_stamp(repo: Path) -> Path:
    """Record HEAD and the hash of every tracked file outside results/ into repo/.campaign/source.json."""
    # first, so a copy without .git fails here (git_revision would answer from an old stamp)
    paths = [p for p in _git(repo, "ls-files", "-z", "--", ".", ":(exclude)results").split("\0") if p]
    revision = git_revision(repo)
    if revision["git_dirty"]:
        raise ArchscaleInputError("uncommitted code changes outside results/ (see git status): commit them first, "
                                  "measurements name a commit")  # fmt: skip
    sha = revision["git_sha"]
    files = {p: _sha256(repo / p) for p in paths}
    stamp = repo / STAMP_RELATIVE_PATH
    stamp.parent.mkdir(parents=True, exist_ok=True)
    stamp.write_text(json.dumps({"git_sha": sha, "files": files}, indent=0, sort_keys=True) + "\n", encoding="utf-8")
    return stamp


def stamped_revision(repo: Path) -> dict | None:
    """{"git_sha", "git_dirty"} from repo's stamp (dirty: a stamped file differs or is gone), or None without one."""
    try:
        stamp = json.loads((repo / STAMP_RELATIVE_PATH).read_text(encoding="utf-8"))
        sha, files = stamp["git_sha"], stamp["files"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    dirty = any(_sha256(repo / path) != digest for path, digest in files.items())
    return {"git_sha": sha, "git_dirty": dirty}
