"""Ratios of two timed things on a machine whose speed drifts: bracketed blocks and their estimate.

A *sequence* is the blocks of a measurement in the order they ran, each ``(arm, seconds)``. The
``REFERENCE`` arm's blocks sit at the even positions, so every other arm's block is **bracketed** by two
reference blocks. With ``t_ref`` the geometric mean of the two around it and ``t_arm`` its own time, a
block's log ratio is ``log(w · t_ref / t_arm)``, with weight ``w`` the arm's label when the arm does ``w``
times the reference's work per unit (K packed runs per step) and 1 otherwise. A drift of the machine's
speed that is smooth over three blocks cancels to first order. An arm's ratio is ``exp(mean log ratio)``
with a Student t interval over its blocks (:class:`Estimate`); rounds of blocks go on until every arm's
relative standard error reaches a precision or a time budget runs out (:class:`Budget`,
:func:`bracketed_rounds`). Used by :mod:`benchmarks.packing` (blocks of a fraction of a second) and the
sweep bench of :mod:`benchmarks.throughput` (blocks of one whole sweep).

Bracketing cancels a drift that scales both arms alike; it cannot cancel one that changes the ratio
itself. On this VM, other tenants put the CPU now and then into a *disturbed* state for seconds at a
time, in which a one-thread step costs up to 1.7× its CPU time, and a small model's overhead-bound step
more than a packed one's: ResNet-8 + BN at batch 2 read K = 8 ratios of 1.93 in the undisturbed state
and 2.3 in the disturbed one, so a ratio over all blocks follows the share of disturbed seconds in its
window (2.28 vs 2.03 in two consecutive runs). With a ``tolerance`` the ratio is taken on the
**undisturbed machine** only: a block counts when its time is at most ``(1 + tolerance)`` × its arm's
fastest block (:func:`undisturbed`), and a bracketed triple when all three of its blocks count. This is
the rule of :mod:`timeit`, whose minimum is the machine's speed without interference, applied to a
state rather than to one timing. It keeps few blocks (4-17 of ~50 in 20 minutes), so the packing bench
leaves it off by default and repeats instead by interleaving its cells over one long window
(:func:`pooled_log_ratios` pools each cell's rounds).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass

from scipy import stats

REFERENCE = 0
Sequence = list[tuple[int, float]]


def fastest_blocks(blocks: Iterable[tuple[int, float]]) -> dict[int, float]:
    """Per arm, the seconds of its fastest block."""
    fastest: dict[int, float] = {}
    for arm, seconds in blocks:
        fastest[arm] = min(seconds, fastest.get(arm, math.inf))
    return fastest


def undisturbed(
    sequence: Sequence, tolerance: float = math.inf, fastest: Mapping[int, float] | None = None
) -> list[bool]:
    """Per block of ``sequence``: whether its seconds are at most ``(1 + tolerance)`` × the fastest block
    of its arm (in ``fastest``, by default in ``sequence``; every block when ``tolerance`` is infinite)."""
    if tolerance < 0:
        raise ValueError(f"tolerance={tolerance!r}: allowed are numbers >= 0 (inf keeps every block)")
    fastest = fastest_blocks(sequence) if fastest is None else fastest
    return [seconds <= (1 + tolerance) * fastest[arm] for arm, seconds in sequence]


def bracketed_log_ratios(
    sequence: Sequence,
    weighted: bool = True,
    tolerance: float = math.inf,
    fastest: Mapping[int, float] | None = None,
) -> dict[int, list[float]]:
    """Per arm, one value per bracketed block whose three blocks are :func:`undisturbed` within
    ``tolerance``: ``log(w · t_ref / t_arm)``, ``t_arm`` the block's seconds and ``t_ref`` the geometric
    mean of the reference blocks right before and after it; ``w`` is the arm's label when ``weighted``
    (K runs per packed step), else 1. Every arm of the sequence has an entry, empty when no block of it
    counts. ``fastest``: as for :func:`undisturbed`.

    On this VM the machine's speed drifts by ~10 % from one second to the next, while blocks a fraction
    of a second apart see nearly the same speed (their step times correlate at 0.9): bracketing cancels
    the drift to first order, where comparing blocks far apart would carry it into the ratio."""
    counts = undisturbed(sequence, tolerance, fastest)
    logs: dict[int, list[float]] = {}
    for position in range(1, len(sequence) - 1, 2):
        (before_arm, before), (arm, seconds), (after_arm, after) = sequence[position - 1 : position + 2]
        if before_arm != REFERENCE or after_arm != REFERENCE or arm == REFERENCE:
            raise ValueError(f"block {position} of the sequence is not bracketed by reference blocks")
        values = logs.setdefault(arm, [])
        if all(counts[position - 1 : position + 2]):
            weight = arm if weighted else 1
            values.append(math.log(weight * math.sqrt(before * after) / seconds))
    return logs


def pooled_log_ratios(
    rounds: list[Sequence], weighted: bool = True, tolerance: float = math.inf
) -> dict[int, list[float]]:
    """:func:`bracketed_log_ratios` of several bracketed sequences (rounds taken at different times, each
    opening with its own reference block), pooled per arm; a block counts against its arm's fastest block
    over all the rounds."""
    fastest = fastest_blocks(block for sequence in rounds for block in sequence)
    pooled: dict[int, list[float]] = {}
    for sequence in rounds:
        for arm, logs in bracketed_log_ratios(sequence, weighted, tolerance, fastest).items():
            pooled.setdefault(arm, []).extend(logs)
    return pooled


@dataclass(frozen=True)
class Estimate:
    """A ratio from an arm's log ratios: their mean's exponential, its 95 % confidence interval (Student
    t over the blocks), standard error (of the log: the ratio's relative error) and number of blocks."""

    ratio: float
    low: float
    high: float
    rel_se: float
    n: int

    @classmethod
    def of(cls, logs: list[float]) -> Estimate:
        if len(logs) < 2:
            value = math.exp(logs[0]) if logs else math.nan
            return cls(value, math.nan, math.nan, math.inf, len(logs))
        mean, se = statistics.fmean(logs), float(stats.sem(logs))
        half = float(stats.t.ppf(0.975, len(logs) - 1)) * se
        return cls(math.exp(mean), math.exp(mean - half), math.exp(mean + half), se, len(logs))


@dataclass(frozen=True)
class Budget:
    """When rounds stop: once every arm's ratio has a relative standard error ≤ ``precision`` from at
    least ``min_rounds`` blocks, after at least ``min_rounds`` rounds and ``min_seconds``, or at
    ``max_seconds`` whatever it reached."""

    precision: float = 0.01
    min_rounds: int = 6
    min_seconds: float = 10.0
    max_seconds: float = 150.0

    def met(self, estimate: Estimate) -> bool:
        """Whether ``estimate`` is precise enough: relative standard error and number of blocks."""
        return estimate.rel_se <= self.precision and estimate.n >= self.min_rounds

    def done(self, rounds: int, seconds: float, estimates: Mapping[Hashable, Estimate]) -> bool:
        if rounds < self.min_rounds or seconds < self.min_seconds:
            return False
        return all(map(self.met, estimates.values())) or seconds >= self.max_seconds


def extend_round(sequence: Sequence, reference: Callable[[], float], arms: Mapping[int, Callable[[], float]]) -> None:
    """Append one round to ``sequence`` (which ends with a reference block): for every arm in turn, an arm
    block then a reference block, so every arm block sits between two reference blocks."""
    for arm, block in arms.items():
        sequence.append((arm, block()))
        sequence.append((REFERENCE, reference()))


def bracketed_rounds(
    reference: Callable[[], float],
    arms: Mapping[int, Callable[[], float]],
    budget: Budget,
    weighted: bool = True,
) -> tuple[Sequence, int, float]:
    """Rounds of blocks until ``budget`` says done of the ratios of :func:`bracketed_log_ratios` (with
    ``weighted``); ``reference`` and each arm run one block and return its seconds.
    Each round, for every arm in turn, an arm block then a reference block (one reference block opens
    the first round), so every arm block sits between two reference blocks. Returns the sequence, the
    rounds and the seconds they took."""
    started = time.perf_counter()
    sequence: Sequence = [(REFERENCE, reference())]
    rounds = 0
    while True:
        extend_round(sequence, reference, arms)
        rounds += 1
        seconds = time.perf_counter() - started
        logs = bracketed_log_ratios(sequence, weighted)
        if budget.done(rounds, seconds, {arm: Estimate.of(values) for arm, values in logs.items()}):
            return sequence, rounds, seconds
