"""A daily Prefect flow that calls an HTTP API once per item, written as `async def`, mapped with
`harness.adaptive_map` on the harness's local Prefect API and Dask cluster; then the same map
awaited in an async flow with `harness.adaptive_map_async`. No network: each call sleeps a
seeded latency, and the first attempt of about 3% of the URLs fails as a busy service does,
which `retries=` absorbs.

    .venv/bin/python examples/async_http/flow.py [--items 2000] [--address tcp://scheduler:8786]

Prints, per flow: the items, the results ok, the batch sizes and concurrency limits of the
batches as the trace recorded them, and why the first batch had its size. What a run learned is
kept in a Prefect Variable (`memory="prefect"`), so the async flow, and every later run, starts
from it (docs/deployed-flow.md).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import time
from collections import Counter
from typing import Any

from prefect import flow

from harness import Failed, adaptive_map, adaptive_map_async, local_runtime

SEED = 7
# The simulated service: a log-normal latency around 20 ms (most calls near it, a tail of slow
# ones), and the first attempt at one URL in 33 refused with a 503.
LATENCY_MEDIAN_S = 0.020
LATENCY_SIGMA = 0.6
TRANSIENT_SHARE = 0.03
# Requests of one task in flight at once, at most: what the service (or your client's
# connection pool) allows. adaptive_map chooses each batch's limit up to it.
MAX_CONCURRENCY = 200
# Further attempts of a URL whose call raised, inside the same task.
RETRIES = 2
# Batch sizes and limits printed before the middle ones are elided.
SHOWN = 16


class ServiceUnavailable(Exception):
    """The simulated service's 503: a transient failure, worth a retry."""


def urls_for(day: str, count: int) -> list[str]:
    """The day's items: one URL per order."""
    return [f"https://api.example.com/v1/orders/{day}/{n}" for n in range(count)]


def latency_s(url: str) -> float:
    return LATENCY_MEDIAN_S * math.exp(LATENCY_SIGMA * random.Random(f"{SEED}:{url}:latency").gauss(0.0, 1.0))


def busy(url: str) -> bool:
    """Whether the service answers this URL's first request with a 503."""
    return random.Random(f"{SEED}:{url}:503").random() < TRANSIENT_SHARE


def body_bytes(url: str) -> int:
    """The size of the response body the service sends for `url`."""
    return random.Random(f"{SEED}:{url}:body").randrange(200, 20_000)


_requests: Counter[str] = Counter()  # requests made for each URL (in the process running the call)


async def fetch(url: str) -> int:
    """GET `url`, return the body's size. In your flow: `async with session.get(url) as r: ...`."""
    _requests[url] += 1
    await asyncio.sleep(latency_s(url))
    if busy(url) and _requests[url] == 1:
        raise ServiceUnavailable(f"503 Service Unavailable: {url}")
    return body_bytes(url)


@flow(name="async-http-example")
def fetch_day(day: str, count: int) -> list[Any]:
    trace: list[dict[str, Any]] = []
    started = time.perf_counter()
    sizes = adaptive_map(fetch, urls_for(day, count), retries=RETRIES, max_concurrency=MAX_CONCURRENCY,
                         memory="prefect", on_failure="return", trace=trace)
    report("flow", day, sizes, trace, time.perf_counter() - started)
    return sizes


@flow(name="async-http-example-async")
async def fetch_day_async(day: str, count: int) -> list[Any]:
    trace: list[dict[str, Any]] = []
    started = time.perf_counter()
    sizes = await adaptive_map_async(fetch, urls_for(day, count), retries=RETRIES, max_concurrency=MAX_CONCURRENCY,
                                     memory="prefect", on_failure="return", trace=trace)
    report("async flow", day, sizes, trace, time.perf_counter() - started)
    return sizes


def report(kind: str, day: str, sizes: list[Any], trace: list[dict[str, Any]], elapsed_s: float) -> None:
    failed = [s for s in sizes if isinstance(s, Failed)]
    ok = len(sizes) - len(failed)
    total = sum(s for s in sizes if not isinstance(s, Failed))
    print(f"{kind} {day}: {len(sizes)} items, {ok} ok, {len(failed)} failed, {total} bytes, {elapsed_s:.1f} s")
    print(f"  batch sizes:  {listed([row['items'] for row in trace])}")
    print(f"  concurrency:  {listed([row['concurrency'] for row in trace])}")
    print(f"  first batch:  {trace[0]['reason']}")
    for failure in failed[:3]:
        print(f"  {failure}")


def listed(values: list[Any]) -> str:
    """`1 24 24 ... 200 (14 batches)`: the first and last few of a batch column."""
    shown = [str(v) for v in values]
    if len(shown) > SHOWN:
        shown = shown[: SHOWN // 2] + ["..."] + shown[-(SHOWN // 2):]
    return f"{' '.join(shown)} ({len(values)} batches)"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=2_000, help="URLs per day (default 2000)")
    parser.add_argument("--address", help="an existing Dask scheduler (default: start a local cluster of 2 workers)")
    args = parser.parse_args(argv)
    with local_runtime(workers=2, threads_per_worker=1, address=args.address) as rt:
        fetch_day.with_options(task_runner=rt.task_runner)("2026-12-01", args.items)
        asyncio.run(fetch_day_async.with_options(task_runner=rt.task_runner)("2026-12-02", args.items))


if __name__ == "__main__":
    main()
