"""A sweep directory bundled for the way back from a device visit, and unpacked again (:mod:`src.gpu_study`,
:mod:`src.restore`).

The bundle holds what lets the study continue elsewhere: every run directory's record, curve and log, the
launch plan, and the packs' checkpoints. A file larger than ``part_bytes`` (15 MiB: the way back takes files
under 16 MiB) goes in as parts ``<name>.part000``, ``<name>.part001``, … that :func:`unbundle` joins.
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from src.run.records import RECORD_FILE

PART_BYTES = 15 * 2**20
PART_SUFFIX = ".part"
BUNDLED = {RECORD_FILE, "metrics.csv", "train.log", "launch_plan.json", "multirun.yaml", "last.ckpt"}


def bundle(sweep_dir: Path, archive: Path, part_bytes: int = PART_BYTES) -> list[str]:
    """Tar the files of :data:`BUNDLED` under ``sweep_dir``, each larger than ``part_bytes`` as parts
    ``<name>.part000``, …; returns the archive's member names."""
    names: list[str] = []
    partial = archive.with_name(archive.name + ".partial")
    with tarfile.open(partial, "w:gz") as tar:
        for path in sorted(sweep_dir.rglob("*")):
            if not path.is_file() or path.name not in BUNDLED:
                continue
            name = str(path.relative_to(sweep_dir.parent))
            data = path.read_bytes()
            if len(data) <= part_bytes:
                tar.add(path, arcname=name)
                names.append(name)
                continue
            for index, start in enumerate(range(0, len(data), part_bytes)):
                part = path.with_name(f"{path.name}{PART_SUFFIX}{index:03d}")
                part.write_bytes(data[start : start + part_bytes])
                tar.add(part, arcname=f"{name}{PART_SUFFIX}{index:03d}")
                names.append(f"{name}{PART_SUFFIX}{index:03d}")
                part.unlink()
    partial.replace(archive)
    return names


def unbundle(archive: Path, into: Path) -> tuple[list[Path], list[str]]:
    """Extract a :mod:`src.gpu_study` bundle under ``into`` (``multirun/``), joining ``<file>.partNNN``
    parts into ``<file>``; a file that exists is left as it is (a record or checkpoint of a later run)."""
    written: list[Path] = []
    skipped: list[str] = []
    parts: dict[Path, list[tuple[str, bytes]]] = {}
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            relative = Path(member.name)
            if not member.isfile() or relative.is_absolute() or ".." in relative.parts:
                skipped.append(f"{member.name}: not a plain relative file")
                continue
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            stem, _, number = relative.name.rpartition(PART_SUFFIX)
            if stem and number.isdigit():
                parts.setdefault(into / relative.with_name(stem), []).append((number, data))
                continue
            target = into / relative
            if target.exists():
                skipped.append(f"{target} exists (left as it is)")
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            written.append(target)
    for target, pieces in parts.items():
        if target.exists():
            skipped.append(f"{target} exists (left as it is)")
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"".join(data for _, data in sorted(pieces)))
        written.append(target)
    return written, skipped
