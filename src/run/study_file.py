"""The one reader of a study file (``conf/experiment/<name>.yaml``) outside Hydra.

A study may extend other studies of its folder through plain ``defaults`` entries (``- norm_compare``);
Hydra then composes the named studies first and the file's own keys over them: mappings merge key by key,
lists (``claims``, a sweep's values) are replaced. :func:`compose_study` does the same with OmegaConf, so
the report (its ``report`` block), the planner (its sweep) and the pre-registration check (every committed
version of the block, read through ``git show``) read one composition and never need Hydra itself.

Entries that name a config group (``- /norm: gn``, ``override /model: resnet8``) or ``_self_`` are not
studies and are skipped: they do not hold study keys.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from omegaconf import OmegaConf

Reader = Callable[[str], "str | None"]  # a path → the file's text, or None when there is no such file


def read_working_tree(path: str) -> str | None:
    """The file's text as it is on disk (None when there is none)."""
    file = Path(path)
    return file.read_text(encoding="utf-8") if file.is_file() else None


def parent_studies(data: Any) -> list[str]:
    """The studies of the same folder a study file extends: its plain ``defaults`` entries."""
    entries = data.get("defaults") if isinstance(data, dict) else None
    return [e for e in entries or [] if isinstance(e, str) and e != "_self_" and "/" not in e]


def compose_study(path: str | Path, read: Reader = read_working_tree) -> dict[str, Any] | None:
    """The study file at ``path`` (as ``read`` gives it) over the studies it extends, composed as Hydra
    does; None when ``read`` finds no file. A parent ``read`` cannot find is skipped (Hydra would refuse
    the study; the report and planner read what there is). Raises ``yaml.YAMLError`` for a file that is
    not YAML."""
    return _compose(str(PurePosixPath(Path(path).as_posix())), read, seen=())


def report_block(path: str | Path, read: Reader = read_working_tree) -> dict[str, Any] | None:
    """The composed study's ``report`` block (claims, title, alpha...), or None when it has none."""
    study = compose_study(path, read)
    block = study.get("report") if study else None
    return block if isinstance(block, dict) and block else None


def _compose(path: str, read: Reader, seen: tuple[str, ...]) -> dict[str, Any] | None:
    text = read(path)
    if text is None:
        return None
    data = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        return {}
    merged: dict[str, Any] = {}
    for name in parent_studies(data):
        parent = str(PurePosixPath(path).parent / f"{name}.yaml")
        if parent != path and parent not in seen:
            merged = _merge(merged, _compose(parent, read, (*seen, path)) or {})
    return _merge(merged, {k: v for k, v in data.items() if k != "defaults"})


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` as Hydra composes: mappings merge, lists and scalars are replaced."""
    merged = OmegaConf.to_container(OmegaConf.merge(base, over))
    return merged if isinstance(merged, dict) else {}
