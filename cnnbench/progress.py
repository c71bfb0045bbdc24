"""Progress that suits where it is written: tqdm's bar on a terminal, one line every so often in a pipe or a
log file (a bar there writes thousands of carriage-return updates). No torch import."""
from __future__ import annotations

import sys
import time
from typing import Any


def duration(seconds: float) -> str:
    """`45s`, `3m05s`, `2h07m`."""
    seconds = int(round(max(0.0, seconds)))
    if seconds >= 3600:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def is_terminal(stream: Any = None) -> bool:
    return bool(getattr(stream or sys.stderr, "isatty", lambda: False)())


class LineCounter:
    """tqdm's `update`/`close` as a line every `every_s` seconds and one at the end: done/total, rate, time
    left."""

    def __init__(self, total: int, desc: str, unit: str = "img", every_s: float = 30.0, stream: Any = None,
                 disable: bool = False) -> None:
        self.total, self.desc, self.unit, self.every_s = int(total), desc, unit, float(every_s)
        self.stream, self.disable = stream, disable
        self.n = 0
        self._t0 = self._last = time.perf_counter()

    def line(self, now: float) -> str:
        elapsed = now - self._t0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.desc}: {self.n}/{self.total} {self.unit}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if rate > 0:
            parts.append(f"{rate:.0f} {self.unit}/s")
            if self.n < self.total:
                parts.append(f"eta {duration((self.total - self.n) / rate)}")
        parts.append(f"elapsed {duration(elapsed)}")
        return " · ".join(parts)

    def _write(self, now: float) -> None:
        self._last = now
        if not self.disable:
            print(self.line(now), file=self.stream or sys.stderr, flush=True)

    def update(self, n: int = 1) -> None:
        self.n += int(n)
        now = time.perf_counter()
        if now - self._last >= self.every_s:
            self._write(now)

    def close(self) -> None:
        if self.n:
            self._write(time.perf_counter())


def counter(total: int, desc: str, unit: str = "img", disable: bool = False, every_s: float = 30.0,
            stream: Any = None):
    """A tqdm bar on a terminal, a `LineCounter` otherwise (both: `update(n)`, `close()`)."""
    if is_terminal(stream):
        from tqdm import tqdm

        return tqdm(total=total, desc=desc, unit=unit, disable=disable, leave=False, dynamic_ncols=True, file=stream)
    return LineCounter(total, desc, unit, every_s=every_s, stream=stream, disable=disable)
