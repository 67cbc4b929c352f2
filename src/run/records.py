"""The run record: one type, :class:`RunRecord`, from which training writes ``result.json``, the report
reads runs, W&B publishes a run's summary, and tests build fixtures.

Schema versions (``schema_version``):

- 0: the records written before the type existed (no ``schema_version`` key); the per-epoch curve was
  only in Lightning's ``metrics.csv`` beside ``result.json``.
- 1: ``schema_version: 1``; the per-epoch curve is in the record (``curve``: one entry per epoch with
  ``epoch``, ``train_loss``, ``val_error`` (%), ``lr``); what the norm says about itself is in
  ``norm_info`` (label, family, plot order and colour, batch dependence, affine shift).
  A run trained packed with others of its configuration (:mod:`src.sweep.pack`) names its pack in ``pack``
  (``null`` for a run trained alone); nothing else differs, so the field needs no new version.
  A run copied from another study's sweep (``reuse_from``, :mod:`src.run.reuse`) names its source in
  ``reused_from`` (``run_dir``, ``study``, ``at``; ``null`` for a run trained for its own study).

Every version loads: fields this version does not know are kept in :attr:`RunRecord.extra` and written
back unchanged. ``result.json`` is written once per state change, atomically (a temporary file in the
same directory, then a rename), so a reader sees either the whole record or none; a study's records are
kept together as ``runs.jsonl``, one compact record per line.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar

from src.run.atomic import write_text_atomic
from src.run.config_keys import migrate_config
from src.run.provenance import redact

SCHEMA_VERSION = 1
RECORD_FILE = "result.json"
RUNS_FILE = "runs.jsonl"
CURVE_FIELDS = ("epoch", "train_loss", "val_error", "lr")
IDENTITY = ("study", "norm", "batch", "dataset", "model", "seed", "epochs")
# fields holding a mapping or list: a null there (an older or partial record) reads as empty
CONTAINERS = (
    "overrides",
    "config",
    "batches",
    "metrics",
    "timing",
    "memory",
    "data",
    "norm_info",
    "norm_layers",
    "norm_state",
    "environment",
    "curve",
    "weights",
    "evaluations",
)


@dataclass
class RunRecord:
    """One run: identity, config, outcome, metrics, curve, provenance.

    ``status`` is ``running`` while the run trains, then ``completed``, ``diverged`` (a non-finite loss)
    or ``failed`` (``error`` and ``traceback`` say why). ``metrics`` holds final errors in % (``test_error``,
    ``val_error``, ``best_val_error``) and the last epoch's mean ``train_loss``; ``curve`` the per-epoch
    values (see :data:`CURVE_FIELDS`).
    """

    IDENTITY: ClassVar[tuple[str, ...]] = IDENTITY

    status: str = "running"
    study: str | None = None
    overrides: list[str] = field(default_factory=list)
    norm: str | None = None
    batch: int | None = None
    dataset: str | None = None
    model: str | None = None
    seed: int | None = None
    epochs: int | None = None
    run_dir: str | None = None
    config_hash: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    launch: dict[str, Any] | None = None
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    traceback: str | None = None
    lr: float | None = None
    batches: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    timing: dict[str, Any] = field(default_factory=dict)
    memory: dict[str, Any] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    norm_info: dict[str, Any] = field(default_factory=dict)
    norm_layers: dict[str, int] = field(default_factory=dict)
    norm_state: dict[str, Any] = field(default_factory=dict)
    num_parameters: int | None = None
    environment: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, float]] = field(default_factory=list)
    pack: dict[str, Any] | None = None
    reused_from: dict[str, Any] | None = None  # the run this record was copied from (src.run.reuse)
    weights: dict[str, Any] = field(default_factory=dict)  # save_weights: the kept model.pt (which, epoch)
    evaluations: list[dict[str, Any]] = field(default_factory=list)  # python -m src.evaluate, appended
    schema_version: int = SCHEMA_VERSION
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RunRecord:
        """A record of any schema version; a dict without ``schema_version`` is version 0. Keys this
        version does not know go to :attr:`extra`; a ``null`` where a mapping or list belongs reads as
        empty; a config in an older layout reads in today's (:func:`src.run.config_keys.migrate_config`)."""
        known = {f.name for f in fields(cls)} - {"extra"}
        values: dict[str, Any] = {"schema_version": 0}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if key in known:
                values[key] = value
            else:
                extra[key] = value
        for name in CONTAINERS:
            if values.get(name) is None:
                values.pop(name, None)
        if "config" in values:
            values["config"] = migrate_config(values["config"])
        return cls(**values, extra=extra)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to ``result.json`` (``extra`` merged back at the top level)."""
        data = asdict(self)
        extra = data.pop("extra")
        return {**data, **{k: v for k, v in extra.items() if k not in data}}

    def to_json(self, indent: int | None = 2) -> str:
        """JSON text with secret environment values redacted; ``indent=None`` gives one compact line."""
        separators = None if indent else (",", ":")
        return redact(json.dumps(self.to_dict(), indent=indent, default=str, separators=separators))

    def identity(self) -> dict[str, Any]:
        """The fields that identify a run in reports and W&B: study, norm, batch, dataset, model, seed, epochs."""
        return {key: getattr(self, key) for key in IDENTITY}

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def test_error(self) -> float:
        value = self.metrics.get("test_error")
        try:
            return float(value)
        except (TypeError, ValueError):
            return math.nan


def write_record(run_dir: Path, record: RunRecord | Mapping[str, Any]) -> None:
    """Write ``run_dir/result.json`` atomically, with secret environment values redacted."""
    if not isinstance(record, RunRecord):
        record = RunRecord.from_dict(record)
    write_text_atomic(Path(run_dir) / RECORD_FILE, record.to_json() + "\n")


def read_record(path: Path) -> dict[str, Any]:
    """Load one ``result.json`` as a plain dict; raises ``ValueError`` for a file that is not a JSON object."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def load_record(path: Path) -> RunRecord:
    """Load one ``result.json`` as a :class:`RunRecord` (any schema version)."""
    return RunRecord.from_dict(read_record(path))


def write_runs(path: Path, records: Iterable[RunRecord]) -> int:
    """Write ``records`` to ``path`` (``runs.jsonl``): one compact JSON record a line, atomically."""
    lines = [record.to_json(indent=None) for record in records]
    write_text_atomic(Path(path), "".join(line + "\n" for line in lines))
    return len(lines)


def read_runs(path: Path) -> list[tuple[int, RunRecord | str]]:
    """Every line of a ``runs.jsonl``: (line number, record), or (line number, the reason it is unreadable)."""
    found: list[tuple[int, RunRecord | str]] = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except ValueError as error:
            found.append((number, f"JSONDecodeError: {error}"))
            continue
        found.append((number, RunRecord.from_dict(data) if isinstance(data, dict) else "not a JSON object"))
    return found
