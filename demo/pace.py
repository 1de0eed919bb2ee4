"""The class's pace for a visitor's streamed runs: a speed (steps per second), pause / resume, and the lesson mode
that holds the run at each stage boundary until the question on screen is revealed. Set from the page at any
time (also while a run streams); the run reads it at every frame."""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

SPEEDS = (1.0, 40.0)   # steps per second the page offers (the server's own limit, MEBM_FPS, still applies)


@dataclass
class Pace:
    speed: float = SPEEDS[1]
    paused: bool = False
    lesson: bool = False
    asking: bool = False       # a lesson question is on screen, not yet revealed

    def interval(self) -> float:
        """Seconds at least between two frames of this visitor's run."""
        return 1.0 / self.speed if self.speed < SPEEDS[1] else 0.0

    def every_frame(self) -> bool:
        """Show every frame (slow motion and lessons), not only the latest of those made meanwhile."""
        return self.lesson or self.speed < SPEEDS[1]

    def ask(self):
        """A question is on screen: hold the run until reveal()."""
        self.asking = True

    def reveal(self):
        self.asking = False

    def held(self) -> bool:
        return self.paused or (self.lesson and self.asking)


class Paces:
    """One Pace per visitor, the least recently used dropped first (at most ``max_visitors``)."""

    def __init__(self, max_visitors: int = 256):
        self.max_visitors = max_visitors
        self._paces: OrderedDict[str, Pace] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Pace:
        with self._lock:
            pace = self._paces.pop(key, None) or Pace()
            self._paces[key] = pace
            while len(self._paces) > self.max_visitors:
                self._paces.popitem(last=False)
            return pace

    def drop(self, key: str):
        with self._lock:
            self._paces.pop(key, None)
