"""A numpy-heavy task: the peak of the spectrum of a signal built from an integer item.

`peak` costs ~50 µs per item here (an FFT of SIGNAL_SIZE points); the harness measures how
best to batch it. Copy this file and the workload files next to it for your own function.
"""

import numpy as np

# Points per signal: sized so that one call costs ~50 µs on the 2-core machines the harness is
# developed on (the cost the benchmark asks for: per-task overhead dominates per_item).
SIGNAL_SIZE = 2048

# Items `make_items` yields; a workload file's [items] count takes the first N of them.
ITEMS = 30_000


def peak(n: int) -> float:
    """One item in, one result out: the largest magnitude of the signal's spectrum."""
    x = np.sin(np.arange(SIGNAL_SIZE) * ((n % 97) + 1) * 0.001)
    return float(np.abs(np.fft.rfft(x)).max())


def make_items() -> range:
    """The items: the integers 0 .. ITEMS - 1."""
    return range(ITEMS)
