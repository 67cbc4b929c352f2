"""The study in W&B: ``python -m src.report … --wandb`` (``make report STUDY=… WANDB=1``) publishes each
study's report as one W&B run in the study's group (``job_type="report"``, named ``<study>/report``):
its summary table and claims as ``wandb.Table``s (keys ``summary`` and ``claims``), its figures as
``wandb.Image``s (``error_vs_batch``, ``error_by_norm``), its verdict counts and title in the summary.

Offline unless asked otherwise, like every W&B run of the project (:func:`src.loggers.resolve_mode`).
The run's folder (``wandb/offline-run-*``) goes under ``$WANDB_DIR`` when set, else under the study's sweep
directory (``multirun/<study>/wandb/``, never into the committed ``results/``), where
``make wandb-sync STUDY=…`` finds it beside the training runs'.
W&B never fails a report: a missing package or a failing W&B is one warning line.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd

from src.run.wandb_mode import resolve_mode

FIGURES = ("error_vs_batch.png", "error_by_norm.png", "learning_curves.png")
TABLES = {"summary": "summary.csv", "claims": "claims.csv"}


def _table(wandb: Any, text: str | bytes) -> Any:
    frame = pd.read_csv(io.StringIO(text if isinstance(text, str) else text.decode()))
    return wandb.Table(dataframe=frame.astype(object).where(frame.notna(), None))


def publish_study(study: str, files: dict[str, str | bytes], save_dir: Path, mode: str | None = None) -> Path | None:
    """One W&B run for ``study``'s report files; returns its local folder, complete on disk (an offline
    run can be synced at once), or ``None`` (after one warning line on stderr) when W&B is missing or fails."""
    try:
        import wandb
        from PIL import Image
    except Exception as error:
        print(f"warning: {study}: not published to W&B ({type(error).__name__}: {error})", file=sys.stderr)
        return None
    run = None
    try:
        save_dir = Path(os.environ.get("WANDB_DIR") or save_dir)
        save_dir.mkdir(parents=True, exist_ok=True)
        meta = json.loads(files.get("meta.json") or "{}")
        run = wandb.init(
            project=os.environ.get("WANDB_PROJECT") or "normlab",
            group=study,
            job_type="report",
            name=f"{study}/report",
            dir=str(save_dir),
            mode=resolve_mode(mode),
            config={key: meta.get(key) for key in ("study", "title", "runs", "not_counted", "slices", "command")},
            reinit="create_new",
        )
        logged: dict[str, Any] = {key: _table(wandb, files[name]) for key, name in TABLES.items() if name in files}
        for name in FIGURES:
            if name in files:
                image = Image.open(io.BytesIO(files[name]))  # type: ignore[arg-type]
                logged[name.removesuffix(".png")] = wandb.Image(image, caption=f"{study}: {name}")
        run.log(logged)
        run.summary.update({"title": meta.get("title", ""), "runs": meta.get("runs"), **(meta.get("verdicts") or {})})
        folder = Path(run.dir).parent  # <save_dir>/wandb/offline-run-<date>-<id>
        run.finish()
        if wandb.run is None:
            # finish() can return before W&B's service has written the run's transaction log (an
            # offline run's .wandb file held only its header in 1 of 12 tries under load); with no
            # other run live in this process, shutting the service down waits for that write.
            wandb.teardown()
        print(f"published {study} to W&B ({run.settings.mode}): {folder}")
        return folder
    except Exception as error:
        print(f"warning: {study}: not published to W&B ({type(error).__name__}: {error})", file=sys.stderr)
        try:
            if run is not None:
                run.finish(exit_code=1)
        except Exception:
            pass
        return None
