"""``python -m src.wandb_sync <study>`` (``make wandb-sync STUDY=…``): upload every offline W&B run of a
study in one command: the training runs' ``<run dir>/wandb/offline-run-*`` and the report run's
(``multirun/<study>/wandb/offline-run-*``), then print where they went.

Without an API key, or without a network, it fails with one clear line (exit 1), not a traceback.
``--dry-run`` lists the runs ``wandb sync`` would upload and needs neither.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

from src.run.wandb_mode import DEFAULT_HOST, logged_in


def offline_runs(root: Path) -> list[Path]:
    """Every ``wandb/offline-run-*`` folder under ``root``, sorted."""
    return sorted(p for p in root.rglob("offline-run-*") if p.is_dir() and p.parent.name == "wandb")


def reachable(url: str, timeout: float = 5.0) -> str | None:
    """``None`` when a TCP connection to ``url``'s host opens, else why not."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return None
    except OSError as error:
        return f"{type(error).__name__}: {error}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.wandb_sync", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="the study: its runs are under <root>/<study>/")
    parser.add_argument("--root", default="multirun", help="where the studies' sweep directories are (multirun)")
    parser.add_argument("--dry-run", action="store_true", help="list what would be synced, upload nothing")
    args = parser.parse_args(argv)
    root = Path(args.root) / args.study
    runs = offline_runs(root)
    if not runs:
        print(
            f"error: no offline W&B runs under {root}/ (train with logger=wandb, report with --wandb)", file=sys.stderr
        )
        return 1
    wandb_cli = [sys.executable, "-m", "wandb", "sync"]
    if args.dry_run:
        return subprocess.run([*wandb_cli, "--dry-run", *map(str, runs)], check=False).returncode
    if not logged_in():
        print(
            f"error: {len(runs)} runs not synced: no W&B API key (run `wandb login` or set WANDB_API_KEY)",
            file=sys.stderr,
        )
        return 1
    host = os.environ.get("WANDB_BASE_URL") or DEFAULT_HOST
    why = reachable(host)
    if why:
        print(f"error: {len(runs)} runs not synced: cannot reach {host} ({why}); they stay offline", file=sys.stderr)
        return 1
    process = subprocess.run([*wandb_cli, *map(str, runs)], capture_output=True, text=True, check=False)
    output = process.stdout + process.stderr
    urls = sorted(set(re.findall(r"https?://\S+", output)))
    if process.returncode != 0:
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
        print(f"error: wandb sync failed (exit {process.returncode}): {last}", file=sys.stderr)
        return 1
    print(f"synced {len(runs)} runs of {args.study} to {host}:")
    for url in urls or ["(wandb sync printed no run addresses)"]:
        print(f"  {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
