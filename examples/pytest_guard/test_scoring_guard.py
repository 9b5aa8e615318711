"""Guard the batching of `score` in CI (docs/guard-in-ci.md).

    pytest --benchmark-save=base                                        # once, on main
    pytest --benchmark-compare --benchmark-compare-fail=median:15%      # on every change

Rounds and strategies come from pyproject.toml's [tool.pytest.ini_options]; a call may set its own.
"""

from scoring import score

ITEMS = range(3000)

# adaptive / static:256 wall. On a stage this short (a few tenths of a second) the adaptive
# controller pays its probe and ramp (a few task round trips): 1.1-2x was measured on a busy
# 2-core machine. 3x leaves room for that noise and still catches a controller stuck at small
# batches (per-item overhead is 35-75 ms: tens of times slower).
MAX_ADAPTIVE_OVER_STATIC = 3.0


def test_scoring_is_batched_well(harness_benchmark):
    result = harness_benchmark(score, ITEMS, strategies=["adaptive", "static:256"])
    assert result.identical, "the strategies returned different results"
    ratio = result.ratio("adaptive", "static:256")
    assert ratio.value < MAX_ADAPTIVE_OVER_STATIC, (
        f"adaptive took {ratio.value:.2f}x static:256 ({result.median('adaptive'):.3f} s vs "
        f"{result.median('static:256'):.3f} s)")
