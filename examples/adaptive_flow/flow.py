"""A Prefect flow that maps a function over 20,000 items with `harness.adaptive_map`, on the
harness's local Prefect API and Dask cluster.

    .venv/bin/python examples/adaptive_flow/flow.py

Switching an existing flow over is one import: `results = adaptive_map(score, items)` in place
of `[f.result() for f in score_task.map(items)]`.
"""

from __future__ import annotations

import hashlib

from prefect import flow

from harness import adaptive_map, local_runtime

ITEMS = 20_000


def score(n: int) -> int:
    """About 20 µs of hashing per item: far too little to pay a Prefect task each."""
    digest = str(n).encode()
    for _ in range(20):
        digest = hashlib.sha256(digest).digest()
    return int.from_bytes(digest[:4], "big")


@flow(name="adaptive-flow-example")
def scores(items: list[int]) -> list[int]:
    return adaptive_map(score, items)


def main() -> list[int]:
    items = list(range(ITEMS))
    with local_runtime(workers=2, threads_per_worker=1) as rt:
        results = scores.with_options(task_runner=rt.task_runner)(items)
    print(f"{len(results)} results, first {results[:3]}, digest {digest(results)}")
    return results


def digest(results: list[int]) -> str:
    """Of the results in order: equal digests, equal lists (tests/test_example_adaptive_flow.py)."""
    return hashlib.sha256(repr(results).encode()).hexdigest()[:16]


if __name__ == "__main__":
    main()
