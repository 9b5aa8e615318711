"""Guard the batching of `score` in CI (docs/guard-in-ci.md).

    pytest --benchmark-save=base                                        # once, on main
    pytest --benchmark-compare --benchmark-compare-fail=median:15%      # on every change

Rounds and workers come from pyproject.toml's [tool.pytest.ini_options]; a call may set its own.
"""

from scoring import score

ITEMS = range(3000)

# adaptive / static:256 wall, measured on a shared 2-core machine: 0.27x with the stock profile
# (12 tasks of ~280 ms of Prefect overhead each against adaptive's 2 and the rest inline) and
# 0.98x with lean. On a stage this short the adaptive controller's probe and ramp cost a few
# task round trips; 3x leaves room for that and for noise, and still catches a
# controller stuck at small batches (tens of times slower: 35-75 ms of overhead per item).
MAX_ADAPTIVE_OVER_STATIC = 3.0


def test_scoring_is_batched_well(harness_benchmark):
    result = harness_benchmark(score, ITEMS, strategies=["adaptive", "static:256"])
    assert result.identical, "the strategies returned different results"
    ratio = result.ratio("adaptive", "static:256")
    assert ratio.value < MAX_ADAPTIVE_OVER_STATIC, (
        f"adaptive took {ratio.value:.2f}x static:256 ({result.median('adaptive'):.3f} s vs "
        f"{result.median('static:256'):.3f} s)")
