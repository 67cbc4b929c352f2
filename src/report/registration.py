"""Were a study's claims registered before its runs? The study file's git history against the runs' start.

A claim's *registered content*: its ``report.claims`` entry less the presentation keys (``claim``,
``published``, ``note``), with the report-level keys it is judged under (``where`` merged under its own, as
:func:`src.report.claims.claims_of` does; ``report.alpha``, ``.convergence``, ``.fixed_budget``, ``.budget``), in
the report block composed as the report reads it (over the studies named in ``defaults``). The version in force
at the first counted run (the last commit at or before the earliest ``started_at``) is compared with each later
commit of the file (``--follow``) or of a study it extends, and with the working tree's file. Never fails a
report: when git or the history cannot be read, every claim is "not checked: <reason>".
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from src.run.provenance import PROJECT_ROOT
from src.run.study_file import compose_study, parent_studies

GIT = "git"
TIMEOUT_S = 30
PRESENTATION = ("claim", "published", "note")
APPLIED = ("alpha", "convergence", "fixed_budget", "budget")  # report-level keys (``where`` is merged)
REGISTERED = "registered before the first run"
CHANGED = "changed after the first run"
NOT_CHECKED = "not checked"


class HistoryError(Exception):
    """The history could not be read; the message is the one-line reason."""


@dataclass
class Version:
    """Each claim's registered content as one commit (or the working tree) had it; None: no study file."""

    label: str  # "abc1234 (2026-11-26T17:46Z)" or "the working tree (uncommitted)"
    when: datetime | None
    claims: dict[str, dict[str, Any]] | None


@dataclass
class Registration:
    """Per claim id its status; ``reason`` when nothing could be checked; ``notes`` about the file."""

    path: str
    statuses: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    reason: str = ""

    def status(self, claim_id: str) -> str:
        if claim_id in self.statuses:
            return self.statuses[claim_id]
        return f"{NOT_CHECKED}: {self.reason or f'no claim {claim_id!r} in {self.path}'}"

    def markdown(self, claim_ids: Iterable[str] = ()) -> list[str]:
        """The "Pre-registration" section of claims.md: the report's claims first, then any others the
        history shows (claims since removed)."""
        parts = ["## Pre-registration", ""] + self.notes + ([""] if self.notes else [])
        for claim_id in dict.fromkeys([*claim_ids, *self.statuses]):
            status = self.status(claim_id)
            parts.append(f"- `{claim_id}`: {'⚠ ' if status.startswith(CHANGED) else ''}{status}")
        if not parts[-1].startswith("- `"):
            parts.append(f"- {NOT_CHECKED}: {self.reason}" if self.reason else "- no claims in the study file")
        return [*parts, ""]


def check_registration(
    study_file: str | Path, started_at: Iterable[Any], judged_on: Mapping[str, Iterable[Any]] | None = None
) -> Registration:
    """The registration of every claim in ``study_file`` against the runs started at ``started_at``; never
    raises. ``judged_on``: per claim id the ``started_at`` of the runs its verdict rests on (its cells, and
    the half-length arm its gate reads); such a claim counts from the first of those, not of the study's
    runs (an arm copied from an earlier study, which it is not judged on, does not predate it)."""
    try:
        judged = {claim_id: list(times) for claim_id, times in (judged_on or {}).items()}
        return _check(Path(study_file), list(started_at), judged)
    except Exception as error:  # the check is a note in claims.md, never worth a report
        reason = str(error) if isinstance(error, HistoryError) else f"{type(error).__name__}: {error}"
        return Registration(str(study_file), reason=" ".join(reason.split()))


def _check(path: Path, started_at: list[Any], judged_on: dict[str, list[Any]]) -> Registration:
    if not path.is_file() and not path.is_absolute() and (PROJECT_ROOT / path).is_file():
        path = PROJECT_ROOT / path  # a claims file named relative to the project, the report run elsewhere
    if not path.is_file():
        shown = path.resolve().relative_to(PROJECT_ROOT) if path.resolve().is_relative_to(PROJECT_ROOT) else path
        raise HistoryError(f"no study file {shown}")
    root = Path(_git(path.resolve().parent, "rev-parse", "--show-toplevel").strip())
    rel = path.resolve().relative_to(root.resolve()).as_posix()
    first = _first(started_at)
    if first is None:
        raise HistoryError("the runs carry no started_at")
    follow, renames = _follow(root, rel)
    if not follow:
        raise HistoryError(f"no git history ({rel} was never committed)")
    versions, skipped = _versions(root, rel, follow)
    result = Registration(rel)
    starts = {claim_id: _first(times) for claim_id, times in judged_on.items()}
    starts = {claim_id: moment for claim_id, moment in starts.items() if moment is not None and moment != first}
    result.notes = [
        f"Each claim's registered content (kind, cells, margins, gate waiver; the report's where, alpha and"
        f" convergence) in `{rel}`, from its git history, against the version in force at the first counted"
        f" run (started {_stamp(first)}): {_in_force(versions, first, rel)}. Its text, published numbers and"
        " notes are presentation."
    ]
    statuses = _statuses(versions, first)
    for claim_id, moment in starts.items():
        own = _statuses(versions, moment).get(claim_id, statuses.get(claim_id, REGISTERED))
        if own != statuses.get(claim_id):  # named only where the claim's own first run changes its reading
            result.notes.append(
                f"- `{claim_id}` counts from the first run it is judged on (started {_stamp(moment)}):"
                f" {_in_force(versions, moment, rel)}; the study's earlier runs are not in its cells"
            )
        statuses[claim_id] = own
    result.notes += [f"- renamed or copied: {line}" for line in renames]
    result.notes += [f"- not compared: {line}" for line in skipped]
    result.statuses = statuses
    return result


def _first(started_at: Iterable[Any]) -> datetime | None:
    times = [t for t in map(_time, started_at) if t is not None]
    return min(times) if times else None


def _base(versions: list[Version], first: datetime) -> int | None:
    """The index of the version in force at ``first``: the last committed at or before it."""
    before = [i for i, v in enumerate(versions) if v.when is not None and v.when <= first]
    return before[-1] if before else None


def _in_force(versions: list[Version], first: datetime, rel: str) -> str:
    index = _base(versions, first)
    if index is None or versions[index].claims is None:
        return f"none: {rel} was first committed after it"
    return versions[index].label


def _statuses(versions: list[Version], first: datetime) -> dict[str, str]:
    """Per claim id: registered, or what changed (and in which version) after the version in force at
    ``first``."""
    index = _base(versions, first)
    base = versions[index] if index is not None else Version("", None, None)
    start = _stamp(first)
    history: dict[str, list[str]] = {}
    previous = base.claims or {}
    for version in versions[index + 1 if index is not None else 0 :]:
        current = version.claims or {}
        for claim_id in dict.fromkeys([*previous, *current]):
            if claim_id not in previous:
                line = f"claim added after the first run at {start}, in {version.label}"
                if base.claims is None and claim_id not in history:
                    line = f"claim written after the runs began (first run {start}; first in {version.label})"
            elif claim_id not in current:
                line = f"claim removed in {version.label}"
            else:
                changes = describe(previous[claim_id], current[claim_id])
                line = f"{version.label}: {'; '.join(changes)}" if changes else ""
            if line:
                history.setdefault(claim_id, []).append(line)
        previous = current
    return {
        claim_id: f"{CHANGED}: {' · '.join(history[claim_id])}" if claim_id in history else REGISTERED
        for claim_id in dict.fromkeys([*(base.claims or {}), *history])
    }


def describe(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed between two registered contents: ``within: 0.5 → 1.0``, ``waiver added``, ..."""
    old, new = _leaves(before), _leaves(after)
    changes = []
    for key in dict.fromkeys([*old, *new]):
        if key in old and key in new and old[key] == new[key]:
            continue
        if key == "convergence.waived":
            changes.append(f"waiver {'added' if key not in old else 'removed' if key not in new else 'changed'}")
        elif key not in old:
            changes.append(f"{key} added ({_show_value(new[key])})")
        elif key not in new:
            changes.append(f"{key} removed (was {_show_value(old[key])})")
        else:
            changes.append(f"{key}: {_show_value(old[key])} → {_show_value(new[key])}")
    return changes


def registered(block: dict[str, Any] | None) -> dict[str, dict[str, Any]] | None:
    """Each claim's registered content in a composed ``report`` block, by id (None for no block)."""
    if block is None:
        return None
    applied = {f"report.{key}": block[key] for key in APPLIED if block.get(key) is not None}
    shared = block.get("where") or {}
    claims: dict[str, dict[str, Any]] = {}
    for number, claim in enumerate([c for c in block.get("claims") or [] if isinstance(c, dict)], 1):
        content = {key: value for key, value in claim.items() if key not in (*PRESENTATION, "where")}
        where = {**shared, **(claim.get("where") or {})}
        claims[str(claim.get("id", f"claim{number}"))] = {**content, **applied, **({"where": where} if where else {})}
    return claims


def _git(cwd: Path, *args: str, check: bool = True) -> str | None:
    try:
        done = subprocess.run([GIT, *args], cwd=cwd, capture_output=True, text=True, timeout=TIMEOUT_S)
    except (OSError, subprocess.SubprocessError) as error:
        raise HistoryError(f"no git history ({type(error).__name__}: {error})") from error
    if done.returncode != 0:
        if not check:
            return None
        lines = done.stderr.strip().splitlines()
        raise HistoryError(f"no git history (git {args[0]}: {lines[0] if lines else f'exit {done.returncode}'})")
    return done.stdout


def _follow(root: Path, rel: str) -> tuple[dict[str, str], list[str]]:
    """{commit: the file's path in it} for the commits that changed the file (``--follow``), and its
    renames."""
    out = _git(root, "log", "--follow", "--name-status", "--format=%x01%H%x09%cI", "--", rel) or ""
    paths: dict[str, str] = {}
    renames: list[str] = []
    for chunk in out.split("\x01")[1:]:
        lines = [line for line in chunk.splitlines() if line.strip()]
        commit, date = lines[0].split("\t")
        paths[commit] = rel
        for line in lines[1:]:
            fields = line.split("\t")
            paths[commit] = fields[-1]
            if fields[0][:1] in "RC" and len(fields) == 3:
                renames.append(f"`{fields[1]}` → `{fields[2]}` in {_label(commit, _time(date))}")
    return paths, renames


def _versions(root: Path, rel: str, follow: dict[str, str]) -> tuple[list[Version], list[str]]:
    """Every version of the composed report block, oldest first: each commit that changed the study file or
    a study its working-tree version extends (in each folder the file had), then the working tree's when it
    differs; and the versions that could not be read."""
    parents = parent_studies(yaml.safe_load((root / rel).read_text(encoding="utf-8")))
    folders = {PurePosixPath(path).parent for path in follow.values()}
    watched = sorted({*follow.values(), *(str(folder / f"{name}.yaml") for folder in folders for name in parents)})
    out = _git(root, "log", "--format=%H%x09%cI", "--", *watched) or ""
    versions, skipped, path = [], [], None
    for line in reversed(out.strip().splitlines()):
        commit, date = line.split("\t")
        path = follow.get(commit, path)
        label = _label(commit, _time(date))
        try:
            block = _block(lambda p, c=commit: _git(root, "show", f"{c}:{p}", check=False), path) if path else None
        except yaml.YAMLError as error:
            skipped.append(f"{label}: not valid YAML ({' '.join(str(error).split())[:120]})")
            continue
        versions.append(Version(label, _time(date), registered(block)))
    here = registered(_block(lambda p: (root / p).read_text(encoding="utf-8") if (root / p).is_file() else None, rel))
    if not versions or here != versions[-1].claims:
        versions.append(Version("the working tree (uncommitted)", None, here))
    return versions, skipped


def _block(read: Callable[[str], str | None], path: str) -> dict[str, Any] | None:
    """The ``report`` block of the study file at ``path`` as ``read`` gives it, composed over the studies of
    its folder named in ``defaults`` (:func:`src.run.study_file.compose_study`); None when it is absent."""
    study = compose_study(path, read)
    block = study.get("report") if study is not None else None
    return None if study is None else block if isinstance(block, dict) else {}


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(value, dict):
        return {prefix: value}
    leaves: dict[str, Any] = {}
    for key, item in value.items():
        leaves.update(_leaves(item, f"{prefix}{key}" if not prefix else f"{prefix}.{key}"))
    return leaves


def _show_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."


def _time(value: Any) -> datetime | None:
    """An ISO time as an aware datetime (UTC when it names no zone); None for anything else."""
    try:
        moment = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _stamp(moment: datetime | None) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%MZ") if moment else "an unknown time"


def _label(commit: str, moment: datetime | None) -> str:
    return f"{commit[:7]} ({_stamp(moment)})"
