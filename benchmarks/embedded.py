"""The default run (small CNN, bn, the default embedded dataset) against a hand loop on its own model and images.

normlab's side is the full ``src.train`` path (composed config, callbacks, checkpointing) with the loop
``fused_step`` selects; the hand loop (:class:`benchmarks.step_loops.HandSteps`) trains the same network on
the same images, normalized once and held in memory, in interleaved blocks inside the run's fit. The issue's
CPU target reads from this table: the default run's step at most 1.05× the hand loop's at batch 2.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.step_loops import HandSteps, InterleavedBlocks, block_size, ratio_and_spread
from src.training.single import train

CONF_DIR = Path(__file__).resolve().parents[1] / "conf"

_PENDING: list[InterleavedBlocks] = []


def pending_blocks() -> InterleavedBlocks:
    """The callback :func:`embedded_pair` handed over, built by ``src.train`` from ``callbacks.hand_blocks``
    (a run's callbacks are Hydra configs; this is how a live object gets into one)."""
    return _PENDING.pop()


#: the fused loop's timed epochs (after one warm-up epoch) in one embedded cell
FUSED_EPOCHS = 8


def embedded_config(batch: int, steps: int, threads: int, loop: str = "auto"):
    """The default run (small CNN, bn, the default embedded dataset) sized to ``steps`` timed steps: one
    epoch for the per-step loop (``loop`` off), 1 + :data:`FUSED_EPOCHS` epochs of ``steps`` /
    FUSED_EPOCHS steps (at least 10) for the fused loop (``fused_step=auto``, the default)."""
    per_epoch = steps if loop == "off" else max(10, steps // FUSED_EPOCHS)
    overrides = [
        f"batch={batch}",
        f"epochs={1 if loop == 'off' else 1 + FUSED_EPOCHS}",
        f"dataset.train_size={batch * (per_epoch + 1)}",
        "logger=none",
        "force=true",
        f"cpu_threads={threads}",
        f"fused_step={loop}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def embedded_pair(batch: int, steps: int, threads: int, run_dir: Path, loop: str = "auto") -> tuple[float, float, str]:
    """(normlab, hand) median seconds per step of the default run, and the loop it trained with: normlab's
    full ``src.train`` path, with a minimal loop on the run's own model and images (normalized once)
    interleaved in blocks."""
    torch.set_num_threads(threads)
    cfg = embedded_config(batch, steps, threads, loop)
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    images, labels = datamodule.splits["train"].tensors
    images = (images.float() / 255.0 - datamodule.mean) / datamodule.std
    net = instantiate(
        cfg.model, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes, norm=instantiate(cfg.norm)
    )
    blocks = InterleavedBlocks(HandSteps(net, images, labels, batch), block_size(steps), warmup=3)
    _PENDING.append(blocks)
    OmegaConf.set_struct(cfg, False)
    cfg.callbacks = {**(cfg.get("callbacks") or {}), "hand_blocks": {"_target_": f"{__name__}.pending_blocks"}}
    record = train(cfg, run_dir)
    return (*blocks.medians(), str(record["timing"].get("fused_step", "per-step")))


def embedded_table(
    batches: list[int],
    steps: int,
    reps: int,
    threads: list[int],
    runs: Path,
    loops: Sequence[str] = ("auto", "off"),
) -> pd.DataFrame:
    """Hand loop vs normlab's full run path on the default small CNN and embedded data, interleaved in
    blocks (:class:`InterleavedBlocks`), for each ``fused_step`` in ``loops`` (the default ``auto`` and the
    per-step ``off``): median step times, and :func:`ratio_and_spread` of the repetitions' ratios. The runs
    go to ``runs``/bench_embedded (overwritten each time)."""
    rows = []
    run_dir = runs / "bench_embedded"
    for loop in loops:
        for thread_count in threads:
            for batch in batches:
                steps_here = max(steps * 2 // batch, min(steps, 120))  # as many images as `steps` at batch 2
                hand, ours, trained = [], [], ""
                for _ in range(reps):
                    our, theirs, trained = embedded_pair(batch, steps_here, thread_count, run_dir, loop)
                    ours.append(our)
                    hand.append(theirs)
                hand_s, ours_s = float(np.median(hand)), float(np.median(ours))
                ratio, spread = ratio_and_spread(ours, hand)
                rows.append(
                    {
                        "model": "small_cnn",
                        "data": str(embedded_config(batch, 1, thread_count).dataset.name),
                        "fused_step": loop,
                        "loop": trained,
                        "batch": batch,
                        "threads": thread_count,
                        "hand_ms": 1e3 * hand_s,
                        "normlab_ms": 1e3 * ours_s,
                        "normlab_over_hand": ratio,
                        "spread": spread,
                        "reps": reps,
                    }
                )
                print(
                    f"  small_cnn fused_step={loop} ({trained}) batch {batch:>3} threads {thread_count}"
                    f"  hand {1e3 * hand_s:7.2f} ms  normlab {1e3 * ours_s:7.2f} ms"
                    f"  ratio {ratio:5.2f} (spread {spread:.2f}, {reps} reps)",
                    flush=True,
                )
    return pd.DataFrame(rows)
