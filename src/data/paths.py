"""Where dataset files are looked up."""

from __future__ import annotations

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def find_file(path: str | Path | None, key: str, hint: str) -> Path:
    """Resolve ``path``: as given (absolute or relative to the working directory), then relative to
    the project root. Raises ``FileNotFoundError`` saying where it looked and ``hint`` on how to get it,
    and ``ValueError`` with ``hint`` when no path was given."""
    if path is None or str(path).strip() in ("", "???"):
        raise ValueError(f"{key} is required and was not given. {hint}")
    candidates = [Path(path).expanduser()]
    if not candidates[0].is_absolute():
        candidates.append(PROJECT_ROOT / path)
    for candidate in candidates:
        if candidate.exists():
            return candidate.resolve()
    looked = ", ".join(str(c.resolve()) for c in candidates)
    raise FileNotFoundError(f"{key}={path}: not found (looked in {looked}). {hint}")
