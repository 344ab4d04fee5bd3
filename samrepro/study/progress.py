"""Progress of a notebook's runs, one line a run on stderr (which papermill passes to the
terminal: the Makefile runs it with --stderr-file /dev/stderr):

    table 1 · run 5 of 16 · embedded · paper isc 50% · seed 1 · 4 done in 3 min 10 s · about 9 min left

The estimate of the time left is the mean time of the runs computed so far (runs read from the
cache take well under a second and are not counted) times the runs still to go, so it is high
while cached runs remain and says nothing until one run has been computed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence

CACHED_SECONDS = 1.0  # a run faster than this was read from the cache
BAR_WIDTH = 100  # characters: wider than a tqdm bar


def duration(seconds: float) -> str:
    """'42 s', '3 min 10 s', '1 h 2 min'."""
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


def describe(config) -> str:
    """Model, arm and seed of a run config (samrepro.study.experiments.RunConfig or alike)."""
    model = config.model + (f"@{config.num_layers}" if getattr(config, "num_layers", None) else "")
    if getattr(config, "nm", None):
        arm = f"{config.saliency} {config.nm[0]}:{config.nm[1]}"
    elif config.sparsity == 0:
        arm = "dense"
    else:
        arm = f"{config.allocation} {config.saliency} {config.sparsity:.0%}"
    if getattr(config, "wbits", 16) < 16:
        arm += f" {config.wbits}-bit"
    return f"{model} · {arm} · seed {config.seed}"


def time_left(seconds_per_run: list[float], remaining: int) -> str:
    """'about 9 min left' from the computed runs' times; '' before any run was computed."""
    computed = [t for t in seconds_per_run if t >= CACHED_SECONDS]
    if remaining == 0:
        return ""
    if not computed:
        return "time left: known after the first computed run"
    return f"about {duration(sum(computed) / len(computed) * remaining)} left"


class Tracked(Sequence):
    """`items` as a sequence that prints a progress line to `stream` as each item is taken
    (the previous item's run being done by then) and a last line when iteration ends."""

    def __init__(self, items, desc: str = "runs", stream=None, clock=time.monotonic):
        self.items, self.desc, self.clock = list(items), desc, clock
        self.stream = stream

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index):
        return self.items[index]

    def _print(self, text: str) -> None:
        # "\r" and the padding: written over the progress bar that settings.run_all draws on
        # the same stream, which redraws itself on the next line
        print("\r" + text.ljust(BAR_WIDTH), file=self.stream or sys.stderr, flush=True)

    def __iter__(self):
        total, times = len(self.items), []
        start = last = self.clock()
        for done, item in enumerate(self.items):
            now = self.clock()
            if done:
                times.append(now - last)
            last = now
            parts = [self.desc, f"run {done + 1} of {total}", describe(item)]
            if done:
                parts.append(f"{done} done in {duration(now - start)}")
            parts.append(time_left(times, total - done))
            self._print(" · ".join(p for p in parts if p))
            yield item
        self._print(f"{self.desc} · {total} runs done in {duration(self.clock() - start)}")


def track(configs, desc: str = "runs") -> Tracked:
    """The hook for a loop over run configs: `configs = progress.track(configs, desc)`."""
    return Tracked(configs, desc)
