"""`harness.adaptive_map` in a user's own flow and `harness.local_runtime`: pure parts directly,
then real flows on the session's Prefect API with Prefect's ThreadPoolTaskRunner and with a
DaskTaskRunner on a real LocalCluster (one of whose workers is killed mid-run)."""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import warnings
from pathlib import Path

import pytest

from harness import Failed, ItemsFailed, adaptive_map, local_runtime
from harness.policy.controller import BatchObservation, Controller
from harness.errors import SpecError
from harness.api.adaptive_map import _Indexed, apply_batch
from harness.policy.learned import Learned
from harness.runtime import learned_store
from harness.runtime.learned_store import MemoryWarning, memory_key
from harness.strategies.window import LOOKAHEAD_MIN_ITEMS, _Lookahead

TRACE_COLUMNS = {"t_s", "batch_size", "items", "duration_s", "compute_s", "throughput_items_s", "reason",
                 "mode", "submitted_s", "in_flight", "window", "per_item_ms", "overhead_ms", "failed",
                 "transfer_ms_per_item", "concurrency"}


# The API server writes task runs from its event stream in batches (harness.runtime.server):
# a loaded machine may take seconds before a finished run can be read back.
RECORDER_WAIT_S = 30


def square(x: int) -> int:
    return x * x


def odd_fails(x: int) -> int:
    if x % 7 == 3:
        raise ValueError(f"bad item {x}")
    return x + 1


# ---------------------------------------------------------------- pure parts


def test_apply_batch_retries_each_item_and_keeps_its_last_failure():
    calls: dict[int, int] = {}

    def flaky(x: int) -> int:
        calls[x] = calls.get(x, 0) + 1
        if x == 1 and calls[x] < 3:
            raise OSError("transient")
        if x == 2:
            raise KeyError(x)
        return -x

    batch = apply_batch(flaky, [_Indexed(i, i) for i in range(4)], retries=2)
    assert [o.index for o in batch.outcomes] == [0, 1, 2, 3]
    assert [o.ok for o in batch.outcomes] == [True, True, False, True]
    assert batch.outcomes[1].value == -1 and calls[1] == 3
    failed = batch.outcomes[2].value
    assert isinstance(failed, Failed) and failed.index == 2 and failed.attempts == 3
    assert isinstance(failed.error, KeyError) and "KeyError" in failed.traceback
    assert batch.compute_s >= sum(o.compute_s for o in batch.outcomes)


def test_lookahead_gives_a_lower_bound_until_the_source_ends():
    exactly = _Lookahead(iter(range(4)), None)
    exactly.read_ahead(4)
    assert exactly.remaining == 4 and exactly.exhausted and not exactly.more  # the end is known
    source = _Lookahead(iter(range(10)), None)
    source.read_ahead(4)  # one item past the target: a source with exactly 4 left is seen to end
    assert source.remaining == 5 and not source.exhausted and source.more
    assert [next(source) for _ in range(3)] == [0, 1, 2]
    source.read_ahead(100)
    assert source.remaining == 7 and source.exhausted and not source.more  # exact once the source ended
    assert list(source) == list(range(3, 10)) and source.remaining == 0
    known = _Lookahead(range(5), 5)
    known.read_ahead(LOOKAHEAD_MIN_ITEMS)  # a known count reads nothing ahead
    assert known.remaining == 5 and next(known) == 0 and known.remaining == 4 and not known.more


def test_controller_caps_tasks_and_never_decides_inline_when_told_not_to():
    """Fed random observations, every batched decision stays within max_batch_size, and with
    allow_inline=False no decision or fill is ever inline (even with a warm-up prior)."""
    rng = random.Random(3)
    for trial in range(100):
        cap = rng.choice([1, 7, 100])
        allow = rng.random() < 0.5
        c = Controller(rng.randint(1, 10**5), rng.randint(1, 16), prior_overhead_s=rng.choice([None, 0.02]),
                       max_batch_size=cap, allow_inline=allow)
        t = 0.0
        for _ in range(30):
            d = c.decide(rng.randint(1, 10**5), rng.randint(0, 20))
            assert d.strategy == "inline" or d.batch_size <= cap
            assert allow or d.strategy == "batched"
            c.submitted(d)
            start, t = t, t + rng.uniform(0.001, 0.2)
            c.observe(BatchObservation(d.batch_size, d.batch_size, start, t, rng.uniform(0, t - start),
                                       d.batch_size, 0, d.strategy))
            fill = c.fill(rng.randint(1, 1000), 0)
            assert allow or fill is None
    with pytest.raises(ValueError, match="max_batch_size"):
        Controller(10, 2, max_batch_size=0)


def test_items_failed_names_the_failed_items():
    failures = [Failed(i, ValueError(f"no {i}")) for i in range(7)]
    exc = ItemsFailed(failures, list(range(10)))
    assert str(exc).startswith("7 of 10 items failed: item 0: ValueError: no 0; item 1")
    assert "and 2 more" in str(exc) and exc.failures == failures


def test_outside_a_flow_and_bad_options_are_refused():
    with pytest.raises(SpecError, match="inside a Prefect flow"):
        adaptive_map(square, [1, 2])
    with pytest.raises(SpecError, match="on_failure: found 'ignore', expected one of raise, return"):
        adaptive_map(square, [1, 2], on_failure="ignore")
    with pytest.raises(SpecError, match="max_batch_size: found 0, expected an integer >= 1"):
        adaptive_map(square, [1, 2], max_batch_size=0)


# ---------------------------------------------------------------- real flows


def _thread_flow(**options):
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def mapped(fn, items):
        return adaptive_map(fn, items, **options)

    return mapped


def _dask_flow(task_runner, **options):
    from prefect import flow

    @flow(task_runner=task_runner)
    def mapped(fn, items):
        return adaptive_map(fn, items, **options)

    return mapped


@pytest.mark.cluster
def test_thread_pool_runner_gives_the_plain_loop_in_order_with_named_runs_and_a_trace(runtime):
    items = list(range(300))
    trace: list[dict] = []
    results = _thread_flow(trace=trace, max_batch_size=40, memory=None)(square, items)  # cold: a probe
    assert results == [square(x) for x in items]
    assert trace and set(trace[0]) == TRACE_COLUMNS
    assert sum(row["items"] for row in trace) == len(items)
    assert all(row["mode"] == "batched" for row in trace)  # inline is off by default
    assert max(row["batch_size"] for row in trace) <= 40

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterName

    names: set[str] = set()
    deadline = time.monotonic() + RECORDER_WAIT_S  # the server records task runs in batches
    with get_client(sync_client=True) as client:
        while "square[0-0]" not in names and time.monotonic() < deadline:
            time.sleep(0.5)
            runs = client.read_task_runs(task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="square[")))
            names = {run.name for run in runs}
    assert "square[0-0]" in names  # the first probe task holds item 0 alone


@pytest.mark.cluster
def test_dask_runner_gives_the_plain_loop_in_order_inline_or_not(runtime):
    items = [f"item-{i}" for i in range(400)]
    for inline in (False, True):
        trace: list[dict] = []
        results = _dask_flow(runtime.task_runner(), inline=inline, trace=trace)(str.upper, items)
        assert results == [x.upper() for x in items]
        assert sum(row["items"] for row in trace) == len(items)
        assert inline or all(row["mode"] == "batched" for row in trace)


@pytest.mark.cluster
def test_a_generator_without_len_streams_in_order(runtime):
    from prefect import flow

    trace: list[dict] = []

    @flow(task_runner=runtime.task_runner())
    def streamed(n: int):
        numbers = (x for x in range(n))  # made in the flow: Prefect would walk a generator parameter
        return adaptive_map(square, numbers, trace=trace)

    results = streamed(1_000)
    assert results == [square(x) for x in range(1_000)]
    assert sum(row["items"] for row in trace) == 1_000
    assert len(trace) > 1  # it streamed in several batches


STREAM_ITEMS = 200_000


def _streamed_flow(task_runner, n: int, **options):
    """A flow mapping `square` over range(n) made in the flow, as a list or as a generator that
    notes, at each item it hands out, how many it has handed out and how many results came back
    (the trace's rows so far: adaptive_map appends each as its batch's results come back)."""
    from prefect import flow

    @flow(task_runner=task_runner)
    def streamed(as_generator: bool):
        trace: list[dict] = []
        held: list[int] = []  # per item handed out: handed out - results back

        def numbers():
            returned, rows = 0, 0
            for x in range(n):
                while rows < len(trace):
                    returned += trace[rows]["items"]
                    rows += 1
                held.append(x + 1 - returned)
                yield x

        # made in the flow: Prefect would walk a generator parameter
        results = adaptive_map(square, numbers() if as_generator else list(range(n)), trace=trace, **options)
        return results, trace, held

    return streamed


def _largest_within(trace: list[dict], batches: int) -> int:
    """The largest batch among the first `batches` submitted."""
    return max(row["batch_size"] for row in sorted(trace, key=lambda r: r["submitted_s"])[:batches])


@pytest.mark.cluster
def test_a_generator_reaches_the_batch_sizes_of_a_list_within_a_few_waves(runtime):
    """The same 200,000 items as a list and as a generator: the generator's batches reach the
    list's within a few waves (it must read to the end to know it; the list knows at once), and
    the results are the same, in order."""
    flow = _streamed_flow(runtime.task_runner(), STREAM_ITEMS)
    listed, list_trace, _ = flow(False)
    streamed, stream_trace, _ = flow(True)
    expected = [square(x) for x in range(STREAM_ITEMS)]
    assert listed == expected and streamed == expected
    threads = 2  # the session's cluster: 2 workers x 1 thread
    list_batches = len(list_trace)
    largest = _largest_within(list_trace, list_batches)
    # a few waves of W tasks beyond the list's own count, at the list's size within its 2x steps
    assert _largest_within(stream_trace, list_batches + 3 * threads) * 2 >= largest
    assert sum(row["items"] for row in stream_trace) == STREAM_ITEMS


@pytest.mark.cluster
def test_a_generator_is_read_ahead_only_for_the_batch_being_sent(runtime):
    """With batches held to 5,000 items, at every item the generator handed out, the items out
    but not back are at most the window's tasks plus one batch, under half the input: a
    read-ahead of four windows of batches (as before) or of the whole input holds it all."""
    items, cap = 60_000, 5_000
    results, trace, held = _streamed_flow(runtime.task_runner(), items, max_batch_size=cap)(True)
    assert results == [square(x) for x in range(items)]
    assert len(held) == items  # each item read once
    window = max(row["window"] for row in trace)
    assert max(held) <= (window + 1) * cap < items / 2, (max(held), window)
    assert _largest_within(trace, 1 + 3 * 2) == cap  # the cap within a few waves of the probe


@pytest.mark.cluster
def test_failed_items_are_raised_together_or_returned_in_place(runtime):
    items = list(range(60))
    expected_failed = [x for x in items if x % 7 == 3]

    returned = _dask_flow(runtime.task_runner(), on_failure="return", retries=1)(odd_fails, items)
    assert [r.index for r in returned if isinstance(r, Failed)] == expected_failed
    assert all(r.attempts == 2 and "bad item" in str(r.error) for r in returned if isinstance(r, Failed))
    assert [r for r in returned if not isinstance(r, Failed)] == [x + 1 for x in items if x % 7 != 3]

    from prefect.flows import flow

    @flow(task_runner=runtime.task_runner())
    def raising(items):
        try:
            adaptive_map(odd_fails, items)
        except ItemsFailed as exc:
            return exc.failures, exc.results, str(exc)
        return None

    failures, results, message = raising(items)
    assert [f.index for f in failures] == expected_failed
    assert message.startswith(f"{len(expected_failed)} of 60 items failed: item 3: ValueError: bad item 3")
    assert [isinstance(r, Failed) for r in results] == [x % 7 == 3 for x in items]


def _dies_once(args: tuple[int, str, int]) -> tuple[int, int]:
    """Item `index` on a Dask worker: at item KILL_AT the worker process kills itself once."""
    index, marker, flow_pid = args
    time.sleep(0.004)
    if index == KILL_AT and os.getpid() != flow_pid and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return index, os.getpid()


KILL_AT = 150


@pytest.mark.cluster
def test_a_worker_killed_mid_run_loses_and_doubles_no_item(runtime, tmp_path):
    """The worker running item KILL_AT dies (SIGKILL, mid-task); Dask re-runs the lost tasks,
    the nanny restarts the worker, and every item comes back exactly once, in order."""
    marker = str(tmp_path / "killed")
    items = [(i, marker, os.getpid()) for i in range(400)]
    with local_runtime(workers=2) as rt:  # joins the session's API, starts its own cluster
        before = set(rt.client.run(os.getpid).values())
        results = _dask_flow(rt.task_runner)(_dies_once, items)
    assert os.path.exists(marker), "no worker was killed"
    assert [index for index, _ in results] == list(range(400))
    pids = {pid for _, pid in results}
    assert os.getpid() not in pids  # inline is off by default: every item ran on a worker
    assert pids & before  # some ran on the workers that were there at the start


@pytest.mark.cluster
def test_local_runtime_stops_what_it_started_on_an_exception(runtime, monkeypatch):
    """No API configured: it starts a server and a cluster, and stops both when the block raises."""
    import psutil
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from harness.runtime.server import health_ok

    monkeypatch.delenv("PREFECT_API_URL")
    with temporary_settings(restore_defaults={PREFECT_API_URL}):
        with pytest.raises(RuntimeError, match="user code failed"):
            with local_runtime(workers=1) as rt:
                assert rt.api_url != runtime.api_url and health_ok(rt.api_url)
                assert rt.task_runner.address == rt.scheduler_address and rt.profile == "stock"
                workers = set(rt.client.run(os.getpid).values())
                port = rt.api_url.rsplit(":", 1)[1].split("/")[0]
                server = [p for p in psutil.Process().children(recursive=True)
                          if "server" in p.cmdline() and port in p.cmdline()]
                assert len(server) == 1
                raise RuntimeError("user code failed")
    assert not health_ok(rt.api_url)
    assert not server[0].is_running() or server[0].status() == psutil.STATUS_ZOMBIE
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in workers)


# ---------------------------------------------------------------- memory across runs

LEARNED = Learned(per_item_s=0.002, item_cv=0.1, overhead_s=0.02, transfer_s=0.0, batch_size=30,
                  worker_threads=2, items=60)


def nap(x: int) -> int:
    """An item of about 2 ms: a small run still has a wave to learn from."""
    time.sleep(0.002)
    return x


def test_a_changed_function_body_makes_a_new_key():
    def build(body: str):
        namespace: dict = {}
        exec(f"def work(x):\n    # a comment is not the body\n    return {body}\n", namespace)
        return namespace["work"]

    same, changed = build("x * x"), build("x + x")
    assert memory_key(same, "DaskTaskRunner", 2) == memory_key(build("x * x"), "DaskTaskRunner", 2)
    assert memory_key(same, "DaskTaskRunner", 2) != memory_key(changed, "DaskTaskRunner", 2)
    # the runtime's shape is part of the key; so are a partial's plain bound arguments
    assert len({memory_key(same, "DaskTaskRunner", 2), memory_key(same, "DaskTaskRunner", 4),
                memory_key(same, "ThreadPoolTaskRunner", 2)}) == 3
    import functools
    assert memory_key(functools.partial(nap), "D", 2) != memory_key(functools.partial(nap, 1), "D", 2)
    key = memory_key(nap, "DaskTaskRunner", 2)
    assert key.startswith("adaptive-map-test-adaptive-map-nap-") and key == key.lower()


def test_two_concurrent_writers_of_one_key_leave_a_valid_entry(tmp_path):
    """Eight threads write the same key 50 times each while another reads it: every read
    parses (a whole entry, never a mix), the last one is one of the writers', no temp is left."""
    key = memory_key(nap, "DaskTaskRunner", 2)
    written = [Learned(per_item_s=0.001 * (i + 1), item_cv=0.1, overhead_s=0.02, transfer_s=0.0,
                       batch_size=10 + i, worker_threads=2, items=1000) for i in range(8)]
    stop = threading.Event()
    read: list[Learned | None] = []

    def reader() -> None:
        while not stop.is_set():
            read.append(learned_store.load(tmp_path, key))

    def writer(learned: Learned) -> None:
        for _ in range(50):
            learned_store.save(tmp_path, key, learned)

    with warnings.catch_warnings():
        warnings.simplefilter("error", MemoryWarning)  # a torn entry would warn: fail instead
        watcher = threading.Thread(target=reader)
        watcher.start()
        writers = [threading.Thread(target=writer, args=(learned,)) for learned in written]
        for t in writers:
            t.start()
        for t in writers:
            t.join()
        stop.set()
        watcher.join()
    assert learned_store.load(tmp_path, key) in written
    assert [r for r in read if r is not None and r not in written] == []
    assert [p.name for p in tmp_path.iterdir()] == [f"{key}.json"]


def test_an_unreachable_prefect_api_is_a_warning_and_a_cold_start():
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api"}):  # the discard port: refused
        with pytest.warns(MemoryWarning, match="could not read the memory in Prefect Variable"):
            assert learned_store.load("prefect", "adaptive-map-x-0") is None
        with pytest.warns(MemoryWarning, match="could not write"):
            learned_store.save("prefect", "adaptive-map-x-0", LEARNED)


def _memory_flow(task_runner, calls: int, **options):
    """A flow calling adaptive_map(nap, ...) `calls` times, returning each call's trace."""
    from prefect import flow

    @flow(task_runner=task_runner)
    def repeated(items: list[int]) -> list[list[dict]]:
        traces = []
        for _ in range(calls):
            traces.append([])
            assert adaptive_map(nap, items, trace=traces[-1], **options) == items
        return traces

    return repeated


def _first(trace: list[dict]) -> dict:
    return min(trace, key=lambda row: row["submitted_s"])


@pytest.mark.cluster
def test_a_second_call_starts_at_the_learned_size(runtime, tmp_path):
    items = list(range(60))
    cold, warm = _memory_flow(runtime.task_runner(), 2, memory=tmp_path)(items)
    assert _first(cold)["reason"].startswith("cold start") and _first(cold)["batch_size"] == 1
    (stored,) = tmp_path.iterdir()
    assert stored.name == memory_key(nap, "DaskTaskRunner", 2) + ".json"
    learned = Learned.from_dict(json.loads(stored.read_text()))
    first = _first(warm)
    assert first["reason"].startswith(f"from memory: {learned.batch_size}/task")
    # the same items: the learned size at once (or the whole-wave plan's, within the hold band of it)
    assert learned.batch_size / 1.25 <= first["batch_size"] <= learned.batch_size * 1.25
    assert len(warm) < len(cold)  # no probe, no ramp
    with pytest.raises(SpecError, match="memory: found 'nowhere', expected one of 'local', 'prefect'"):
        _memory_flow(runtime.task_runner(), 1, memory="nowhere")(items)


@pytest.mark.cluster
def test_a_corrupt_memory_is_a_warning_and_a_cold_start_then_replaced(runtime, tmp_path):
    path = tmp_path / f"{memory_key(nap, 'DaskTaskRunner', 2)}.json"
    path.write_text('{"schema": "harness.learned", "version": 1, "per_item_s": ')  # cut short
    with pytest.warns(MemoryWarning, match="could not read the memory in .*not JSON"):
        (trace,) = _memory_flow(runtime.task_runner(), 1, memory=tmp_path)(list(range(60)))
    assert _first(trace)["reason"].startswith("cold start")
    assert Learned.from_dict(json.loads(path.read_text())).items == 60  # this run's, in its place


@pytest.mark.cluster
def test_a_memory_in_a_prefect_variable_is_shared_through_the_api(runtime):
    from prefect.variables import Variable

    key = memory_key(nap, "ThreadPoolTaskRunner", 2)
    Variable.unset(key, _sync=True)
    items = list(range(60))
    try:
        (cold,) = _memory_flow(_thread_pool(), 1, memory="prefect", workers=2)(items)
        stored = Learned.from_dict(Variable.get(key, _sync=True))
        (warm,) = _memory_flow(_thread_pool(), 1, memory="prefect", workers=2)(items)  # another flow run
    finally:
        Variable.unset(key, _sync=True)
    assert _first(cold)["reason"].startswith("cold start")
    assert _first(warm)["reason"].startswith(f"from memory: {stored.batch_size}/task")


def _thread_pool():
    from prefect.task_runners import ThreadPoolTaskRunner

    return ThreadPoolTaskRunner(max_workers=2)
