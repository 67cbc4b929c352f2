"""Learning-rate schedules: the multiplier of the initial learning rate over the course of training.

Each schedule is a plain function ``schedule(progress, **parameters) -> float`` of the fraction of
training done, ``progress`` = p ∈ [0, 1] (optimizer steps taken ÷ steps in the run), built from
``conf/optim/schedule/<name>.yaml`` as a Hydra ``_partial_`` so that its parameters come from the config
and the LightningModule calls it with ``progress`` alone. A new schedule is one function here (or in any
importable module) and one YAML naming it in ``_target_``.

Warmup is not a schedule but a ramp in front of any of them (:func:`warmed_up`).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

Schedule = Callable[[float], float]


def cosine(progress: float) -> float:
    """Cosine decay to 0 (Loshchilov & Hutter 2017, without restarts): ½ (1 + cos π p)."""
    return 0.5 * (1.0 + math.cos(math.pi * min(max(progress, 0.0), 1.0)))


def step(progress: float, milestones: Sequence[float] = (0.5, 0.75), gamma: float = 0.1) -> float:
    """Step decay: γ^k once k of the ``milestones`` (fractions of training, e.g. 0.3, 0.6, 0.9 for the
    GN paper's epochs 30, 60 and 90 of 100) have been passed."""
    return gamma ** sum(progress >= milestone for milestone in milestones)


def constant(progress: float) -> float:
    """No decay: 1 throughout."""
    return 1.0


def warmed_up(schedule: Schedule, progress: float, warmup: float) -> float:
    """``schedule(p)`` × min(1, p / w): a linear ramp from 0 over the first fraction w of training
    (Goyal et al. 2017's gradual warmup), the schedule unchanged after it; w = 0 is no warmup."""
    ramp = min(1.0, progress / warmup) if warmup > 0 else 1.0
    return ramp * schedule(progress)


#: where :func:`check_schedule` evaluates a schedule: its start, every eighth of training, its end
CHECKED_PROGRESS = tuple(k / 8 for k in range(9))


def check_schedule(schedule: object) -> Schedule:
    """``schedule`` must be callable with the progress alone (a ``_partial_`` whose other parameters
    are all given) and give a finite multiplier >= 0 over training (checked at :data:`CHECKED_PROGRESS`:
    a step decay with a negative ``gamma`` fails); fails with one line naming ``optim.schedule``.

    Returns a plain :class:`functools.partial` of the same function and arguments: the schedule is
    called at every optimizer step, and Hydra's ``_partial_`` object (``_DeferredTarget``, Hydra
    1.3.8) authorizes its target again on each call, about 0.1 ms, which at batch 2 is several percent
    of a small CNN's step. Its target was authorized when the config was instantiated."""
    if not callable(schedule):
        allowed = "it must be a schedule config (optim/schedule=cosine|step|constant)"
        raise ValueError(f"optim.schedule={schedule!r} is invalid: {allowed}")
    for progress in CHECKED_PROGRESS:
        try:
            value = schedule(progress)
        except TypeError as error:
            raise ValueError(f"optim.schedule is invalid: calling it with the progress alone fails ({error})") from None
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            where = "at the start of training" if progress == 0 else f"at {progress:.0%} of training"
            raise ValueError(f"optim.schedule gives {value!r} {where}: it must give a number >= 0")
    if isinstance(schedule, functools.partial) and type(schedule) is not functools.partial:
        return functools.partial(schedule.func, *schedule.args, **schedule.keywords)
    return schedule
