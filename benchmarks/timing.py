"""The one clock of the ratio benchmarks: `timed` one call, and interleaved repetitions.

    times = interleaved({"transformers": fn_a, "ours": fn_b}, warmup=2, reps=5, device=device)
    median(times["ours"]) / median(times["transformers"])

Interleaving (a, b, a, b, ...) lets drift and other processes on a shared host hit both alike.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds one call of `fn` takes (CUDA work waited for on both ends)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def interleaved(fns: dict[str, Callable[[], object]], warmup: int, reps: int, device: torch.device) -> dict[str, list[float]]:
    """{name: [seconds per repetition]} of `fns` run in turn, after `warmup` untimed rounds."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(reps):
        for name, fn in fns.items():
            times[name].append(timed(fn, device))
    return times


def interleaved_medians(fns: dict[str, Callable[[], object]], warmup: int, reps: int, device: torch.device) -> dict[str, float]:
    """{name: median seconds} of `interleaved`."""
    return {name: statistics.median(t) for name, t in interleaved(fns, warmup, reps, device).items()}
