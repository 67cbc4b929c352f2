"""The studies in ``conf/experiment/`` and their one-line questions, for ``--help`` and ``make help``.

A study's one source is ``conf/experiment/<name>.yaml`` (``# @package _global_``, run with
``python -m src.train -m experiment=<name>``: ``conf/train.yaml``'s defaults list holds ``experiment:
null``; the ``+experiment=<name>`` form works too, :func:`experiment_choice`); ``sweeps/<name>.yaml`` is
a thin primary config that overrides it, for ``make sweep STUDY=<name>`` and ``--config-dir sweeps
--config-name <name>``.

``python -m src.studies`` prints them (``make help`` calls it); ``python -m src.train --help`` lists them
through the ``${studies:}`` resolver in ``conf/train.yaml``'s help template.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import yaml

from src.run.study_file import parent_studies

ROOT = Path(__file__).resolve().parents[1]
EXPERIMENTS = ROOT / "conf" / "experiment"
SWEEPS = ROOT / "sweeps"
RESOLVER = "studies"


def studies(directory: Path = EXPERIMENTS) -> dict[str, str]:
    """Study name → its question (``report.title``), or the study it extends (a variant without one)."""
    found: dict[str, str] = {}
    for path in sorted(directory.glob("*.yaml")):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError):
            continue
        title = (data.get("report") or {}).get("title") if isinstance(data.get("report"), dict) else None
        if not title:
            bases = parent_studies(data)
            title = f"(a variant of {bases[0]})" if bases else ""
        found[path.stem] = str(title)
    return found


def studies_text(indent: str = "  ") -> str:
    """One line per study: ``name  question``."""
    found = studies()
    width = max((len(name) for name in found), default=0)
    return "\n".join(f"{indent}{name:<{width}}  {title}".rstrip() for name, title in found.items())


def experiment_choice(argv: Sequence[str]) -> list[str]:
    """``argv`` with ``+experiment=<name>`` as ``experiment=<name>``: Hydra refuses to append (``+``) a
    group the defaults list already holds (``experiment: null``), and the studies were first run with
    the ``+`` form; both pick the same study, with the same config hash and run directories."""
    prefix = "+experiment="
    return [argv[0], *(f"experiment={a[len(prefix) :]}" if a.startswith(prefix) else a for a in argv[1:])]


def register_resolver() -> None:
    """``${studies:}``: the studies text (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, lambda: studies_text())


if __name__ == "__main__":
    print(studies_text())
