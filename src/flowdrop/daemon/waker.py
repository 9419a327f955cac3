"""A self-pipe: the main loop sleeps on it; signal handlers and other threads write a byte."""

from __future__ import annotations

import contextlib
import os
import select


class Waker:
    """``wake()`` is safe from signal handlers and other threads; ``wait()`` sleeps until then."""

    def __init__(self) -> None:
        self._r, self._w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._w, b"x")

    def wait(self, timeout: float) -> None:
        with contextlib.suppress(InterruptedError):
            ready, _, _ = select.select([self._r], [], [], max(0.0, timeout))
            if ready:
                with contextlib.suppress(BlockingIOError):
                    while os.read(self._r, 4096):
                        pass

    def close(self) -> None:
        for fd in (self._r, self._w):
            with contextlib.suppress(OSError):
                os.close(fd)
