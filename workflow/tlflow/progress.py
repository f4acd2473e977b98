"""Progress lines a person can follow in a log: done of total, rate, time left."""

from __future__ import annotations

import time


class Progress:
    def __init__(self, total: int, log, every_seconds: float = 10.0, what: str = "images"):
        self.total, self.log, self.every, self.what = total, log, every_seconds, what
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self.log.info(self.line(now))

    def line(self, now: float | None = None) -> str:
        elapsed = max((now or time.monotonic()) - self.start, 1e-9)
        rate = self.done / elapsed
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        return (
            f"{self.done}/{self.total} {self.what} "
            f"({100 * self.done / max(self.total, 1):.0f}%), {rate:.1f} {self.what}/s, "
            f"{_clock(left)} left"
        )


def _clock(seconds: float) -> str:
    if seconds == float("inf"):
        return "unknown time"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
