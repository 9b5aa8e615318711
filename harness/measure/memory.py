"""This process's resident memory during a run: an RSS sampler, and handing freed heap back to
the OS first so a run's own peak counts memory it took, not memory an earlier run left."""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import threading

import psutil

# The RSS sampler's period: fine enough to catch the flow process's peak during a batch
# submit burst, coarse enough to cost nothing measurable (one /proc read per period).
RSS_SAMPLE_PERIOD_S = 0.05


def release_free_memory() -> None:
    """Collect garbage and hand the allocator's free pages back to the OS (glibc's malloc_trim;
    elsewhere the collection alone): RSS then counts memory in use, not memory once used."""
    gc.collect()
    libc = ctypes.util.find_library("c")
    try:
        ctypes.CDLL(libc).malloc_trim(0)
    except (OSError, AttributeError, TypeError):  # not glibc: nothing to trim
        pass


class RssSampler:
    """Resident memory of this process while the context is open (a daemon thread samples it).

    `peak_mb` is the process's high-water mark, RSS at entry included. `own_peak_mb` starts
    after `release_free_memory()`: with `own_start_mb`, the RSS just after it, it measures what
    the work inside the context took, even when an earlier run left freed heap it could reuse.
    The collection runs before the caller's clock starts, and spares the run a collection of
    the previous run's garbage.
    """

    def __init__(self) -> None:
        self.peak_mb = 0.0
        self.start_mb = 0.0
        self.own_peak_mb = 0.0
        self.own_start_mb = 0.0
        self._stop = threading.Event()
        self._process = psutil.Process()

    def _sample(self) -> None:
        rss = self._process.memory_info().rss / 2**20
        self.peak_mb = max(self.peak_mb, rss)
        self.own_peak_mb = max(self.own_peak_mb, rss)

    def _loop(self) -> None:
        while not self._stop.wait(RSS_SAMPLE_PERIOD_S):
            self._sample()

    def __enter__(self) -> RssSampler:
        self._sample()
        self.start_mb = self.peak_mb
        release_free_memory()
        self.own_peak_mb = 0.0
        self._sample()
        self.own_start_mb = self.own_peak_mb
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._sample()

    @property
    def growth_mb(self) -> float:
        return self.peak_mb - self.start_mb

    @property
    def own_growth_mb(self) -> float:
        """Peak above the start, both after freed memory went back to the OS."""
        return self.own_peak_mb - self.own_start_mb
