"""What a long-running demo server needs besides the model: a temp folder bounded in size, and freed heap
handed back to the operating system.

``UploadSweeper`` keeps the folder where the web framework stores uploads within a size, in a background
thread (every few seconds, never on a visitor's request): it removes the empty files and directories left
by repeated uploads, uploads older than ``max_age`` and, when the folder holds more than its budget, the
oldest uploads first. Files older than ``min_age`` only (an upload is read within seconds of arriving), never
those in ``keep`` (the page's own files: its example pictures).

``trim_heap`` asks glibc to return freed memory (``malloc_trim``): the chains of ended sessions leave
freed blocks the allocator keeps otherwise, and the resident size creeps up with every visitor.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import threading
import time
from pathlib import Path

_LIBC = None
_TRIM_LOCK = threading.Lock()
_LAST_TRIM = [0.0]


def trim_heap(min_interval: float = 0.0) -> bool:
    """Return freed heap to the OS (glibc ``malloc_trim(0)``), at most once per ``min_interval`` seconds.
    True if it ran; False where there is no glibc (macOS, musl) or it was too soon."""
    global _LIBC
    now = time.monotonic()
    with _TRIM_LOCK:
        if now - _LAST_TRIM[0] < min_interval:
            return False
        _LAST_TRIM[0] = now
        try:
            if _LIBC is None:
                _LIBC = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            _LIBC.malloc_trim(0)
            return True
        except (OSError, AttributeError):
            return False


class UploadSweeper:
    """Bounds ``root`` (see the module's docstring). ``sweep()`` does one pass; ``start()`` runs it every
    ``interval`` seconds in a daemon thread. At most ``max_entries`` entries are looked at per pass."""

    def __init__(self, root: str | Path, max_bytes: int, min_age: float = 10.0, max_age: float = 600.0,
                 interval: float = 10.0, keep=(), max_entries: int = 20_000):
        self.root, self.max_bytes, self.min_age, self.max_age = Path(root), max_bytes, min_age, max_age
        self.interval = interval
        self.keep = {os.path.realpath(p) for p in keep}
        self.max_entries = max_entries
        self._thread = None

    def sweep(self) -> dict:
        """One pass: {"files": removed, "dirs": removed, "bytes": left}."""
        now = time.time()
        cutoff, expired = now - self.min_age, now - self.max_age
        files, dirs, seen = [], [], 0
        removed = {"files": 0, "dirs": 0}
        try:
            top = list(os.scandir(self.root))
        except OSError:
            return {**removed, "bytes": 0}
        for entry in top:
            seen += 1
            if seen > self.max_entries:
                break
            try:
                if entry.is_file(follow_symlinks=False):
                    files.append((entry.stat(follow_symlinks=False), entry.path))
                elif entry.is_dir(follow_symlinks=False):
                    dirs.append(entry.path)
                    with os.scandir(entry.path) as inner:
                        for f in inner:
                            seen += 1
                            if f.is_file(follow_symlinks=False):
                                files.append((f.stat(follow_symlinks=False), f.path))
            except OSError:
                continue
        kept = []
        for st, path in files:
            if os.path.realpath(path) in self.keep:
                continue
            if (st.st_size == 0 and st.st_mtime < cutoff) or st.st_mtime < expired:
                removed["files"] += self._unlink(path)     # empty leftovers of repeated uploads, old uploads
            else:
                kept.append((st, path))
        total = sum(st.st_size for st, _ in kept)
        for st, path in sorted(kept, key=lambda f: f[0].st_mtime):   # over the budget: the oldest uploads first
            if total <= self.max_bytes:
                break
            if st.st_mtime < cutoff and self._unlink(path):
                removed["files"] += 1
                total -= st.st_size
        for d in dirs:
            try:
                if os.stat(d).st_mtime < cutoff:
                    os.rmdir(d)                              # only succeeds when it is empty
                    removed["dirs"] += 1
            except OSError:
                pass
        return {**removed, "bytes": total}

    @staticmethod
    def _unlink(path) -> int:
        try:
            os.unlink(path)
            return 1
        except OSError:
            return 0

    def files(self) -> list[str]:
        """Every file under the folder now (to ``keep`` the page's own, right after the page is built)."""
        return [str(p) for p in self.root.rglob("*") if p.is_file()] if self.root.is_dir() else []

    def start(self) -> "UploadSweeper":
        if self._thread is None:
            self._thread = threading.Thread(target=self._loop, name="upload-sweeper", daemon=True)
            self._thread.start()
        return self

    def _loop(self):
        while True:
            time.sleep(self.interval)
            try:
                self.sweep()
            except Exception:   # never let housekeeping end the server
                pass


class URLLengthLimit:
    """ASGI middleware: a request whose path and query are longer than ``limit`` bytes is answered with 414 and
    one line of text (the web framework would fail on it with an error page of its own, HTTP 500)."""

    def __init__(self, app, limit: int = 16384, message: str = "This address is too long."):
        self.app, self.limit, self.body = app, limit, message.encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"") \
                > self.limit:
            await send({"type": "http.response.start", "status": 414,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(self.body)).encode())]})
            await send({"type": "http.response.body", "body": self.body})
            return
        await self.app(scope, receive, send)
