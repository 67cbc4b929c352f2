"""A sweep directory bundled for the way back from a device visit, and unpacked again (:mod:`src.gpu_study`,
:mod:`src.restore`).

The bundle holds what lets the study continue elsewhere: every run directory's record, curve and log, the
launch plan, and the packs' checkpoints. A file larger than ``part_bytes`` (15 MiB: the way back takes files
under 16 MiB) goes in as parts ``<name>.part000``, ``<name>.part001``, … that :func:`unbundle` joins.
"""

from __future__ import annotations

import io
import tarfile
import zlib
from pathlib import Path

from src.run.atomic import write_bytes_atomic
from src.run.records import RECORD_FILE

PART_BYTES = 15 * 2**20
PART_SUFFIX = ".part"
BUNDLED = {RECORD_FILE, "metrics.csv", "train.log", "launch_plan.json", "multirun.yaml", "last.ckpt"}


class BundleError(ValueError):
    """A bundle that cannot be read whole: truncated, not a gzip tar, or a file with a part missing."""


def bundle(sweep_dir: Path, archive: Path, part_bytes: int = PART_BYTES) -> list[str]:
    """Tar the files of :data:`BUNDLED` under ``sweep_dir``, each larger than ``part_bytes`` as parts
    ``<name>.part000``, …; returns the archive's member names. Nothing is written into ``sweep_dir``."""
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
                piece = data[start : start + part_bytes]
                info = tarfile.TarInfo(f"{name}{PART_SUFFIX}{index:03d}")
                info.size, info.mtime = len(piece), int(path.stat().st_mtime)
                tar.addfile(info, io.BytesIO(piece))
                names.append(info.name)
    partial.replace(archive)
    return names


def read_bundle(archive: Path) -> tuple[dict[Path, bytes], list[str]]:
    """Every plain relative file of ``archive`` by its relative path, parts joined in order, all read before
    anything is written; and the members passed over. Raises :class:`BundleError` for an archive that cannot
    be read to its end or a file whose parts are not ``000`` to ``n − 1``."""
    files: dict[Path, bytes] = {}
    parts: dict[Path, dict[int, bytes]] = {}
    skipped: list[str] = []
    try:
        with tarfile.open(archive, "r:gz") as tar:
            for member in tar:
                relative = Path(member.name)
                if not member.isfile() or relative.is_absolute() or ".." in relative.parts:
                    skipped.append(f"{member.name}: not a plain relative file")
                    continue
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                stem, _, number = relative.name.rpartition(PART_SUFFIX)
                if stem and number.isdigit():
                    parts.setdefault(relative.with_name(stem), {})[int(number)] = data
                else:
                    files[relative] = data
    except (tarfile.TarError, EOFError, OSError, zlib.error) as error:
        raise BundleError(f"{archive} cannot be read whole as a gzip tar bundle ({error})") from error
    for relative, pieces in parts.items():
        if sorted(pieces) != list(range(len(pieces))):
            raise BundleError(f"{archive}: {relative} has parts {sorted(pieces)}, not 0 to {len(pieces) - 1}")
        files[relative] = b"".join(pieces[index] for index in range(len(pieces)))
    return files, skipped


def unbundle(archive: Path, into: Path) -> tuple[list[Path], list[str]]:
    """Extract a :mod:`src.gpu_study` bundle under ``into`` (``multirun/``), its parts joined
    (:func:`read_bundle`: a bundle that cannot be read whole writes nothing); a file that exists is left as it
    is (a record or checkpoint of a later run), and each file is written whole or not at all."""
    files, skipped = read_bundle(archive)
    written: list[Path] = []
    for relative, data in sorted(files.items()):
        target = into / relative
        if target.exists():
            skipped.append(f"{target} exists (left as it is)")
            continue
        write_bytes_atomic(target, data)
        written.append(target)
    return written, skipped
