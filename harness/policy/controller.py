"""The adaptive batching policy: observations in, a typed `Decision` out. Pure policy.

No Prefect, no Dask, no clock: time arrives as data in each `BatchObservation`, and the
controller never submits anything. The reasoning behind every rule and constant is in
docs/controller.md; the figures it cites come from `python tests/controller_sweep.py`.

The mechanism contract (checked: a broken one raises `ContractError`)
----------------------------------------------------------------------
- `decide(remaining, in_flight, more=...)` before each batch, then exactly one of
  `submitted(decision)` (the task was submitted, or the inline batch is about to run),
  `rerouted(decision, strategy)` (a breaker sent it down another path) or
  `cancel(decision)` (nothing was submitted: every path refused);
- `observe(obs)` for each finished task or inline batch, in the order the flow saw them;
  `task_failed(started, finished)` for a task that failed as a whole (its batch re-runs);
- `fill(remaining, in_flight, more=...)` when the window is full and nothing has finished:
  items for the flow to run itself, or None;
- `more=True` when `remaining` is a lower bound (a source of unknown length, not yet
  exhausted): the end is not in sight, so no end-game rule applies and the batch may exceed
  `remaining` (the mechanism reads ahead that far, or, when the source ends first, cancels
  and decides again with the exact count).

The policy in brief (docs/controller.md has the why)
----------------------------------------------------
- estimates: per-item work `c` (item-weighted, drift-aware); per task a fixed cost `o` and
  a per-item transfer cost `t`, fitted robustly (Theil-Sen) to duration - compute - queueing
  (replayed) against the batch size;
- target: the fewest whole waves of W tasks over the outstanding items whose straggle
  guard and overhead share pay, the batch sized so the waves come out whole;
- steering: straight to the overhead-dominated size, then at most 2x per step, hold inside
  a band, shrink on a repeated signal (at once on confirmed drift), thinner batches at the
  tail; with the end not known, the overhead share alone (the whole-wave plan's limit as
  the items grow without bound);
- inline: the rest runs in the flow when it costs less than one task's overhead; with a
  warm-up prior the flow first runs one item itself, so a tiny workload needs no task;
- memory: `learned()` is what a run learned (harness.policy.learned); a controller started
  from one sends no probe and no learn item, opens the window to W at once and sizes its
  first wave from it, and drops it when the first task seen contradicts it.
"""

from __future__ import annotations

import bisect
import collections
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.policy.learned import Learned

# --- tuning constants ---------------------------------------------------------------------
# "sweep" figures: geometric mean of adaptive / best static over the tuned workloads of
# tests/controller_sweep.py (FIFO queue), as printed by its --vary option; docs/controller.md
# has the reasoning behind each rule.

# At most this growth per step beyond the jump size: a batch is never far beyond a size
# already observed (joblib's cap). sweep: 1.5 -> 1.025, 2 -> 1.027, 4 -> 1.025 (flat).
GROWTH_MAX = 2.0

# ... except up to this many overheads of work per task, where the size may jump in one
# step: such a task lasts at most ~JUMP_OVERHEADS + 1 overheads whatever the estimates'
# errors, and every small early task costs a serial dispatch on many threads.
# sweep: 1 -> 1.070, 3 -> 1.075, 10 -> 1.027, 32 -> 1.024 (32 is the share cap itself).
JUMP_OVERHEADS = 10.0

# Batches no bigger than needed to bring the fixed overhead down to this share of a task.
# sweep: 0.01 -> 1.016, 0.02 -> 1.021, 0.03 -> 1.027, 0.05 -> 1.037; but below 3 % a
# 0.5 s item with a 20 ms overhead (3.8 %) flips between batches of 1 and 2, so 3 %.
TARGET_OVERHEAD_SHARE = 0.03

# Hold the current size while the target is within this relative band (real overheads
# drift by tens of % within a run). sweep flat: 0.1 / 0.25 / 0.4 -> 1.027.
HOLD_BAND = 0.25

# Shrink only after this many consecutive decisions (each after a new observation) point
# below the band, so one odd estimate cannot cut the batch; a confirmed drift bypasses it.
# sweep: 1 -> 1.030, 3 -> 1.027, 5 -> 1.034.
SHRINK_CONFIRM = 3

# Drift: a task whose per-item cost is beyond DRIFT_RATIO x (or 1/x) the estimate, widened
# by (1 + the recent tasks' coefficient of variation), is a signal; DRIFT_CONFIRM signals in
# a row reset the estimate to the newest task. 10 % noise never triggers it. sweep flat:
# ratio 1.5 / 2 / 3 -> 1.027; confirm 1 / 2 / 3 -> 1.028 / 1.027 / 1.027.
DRIFT_RATIO = 2.0
DRIFT_CONFIRM = 2

# Tasks whose per-item cost forms the estimate. sweep: 4 -> 1.028, 8 / 16 -> 1.027;
# 8 refills soon after a drift reset.
COST_WINDOW_TASKS = 8

# Samples whose median residual is the fixed cost o. sweep: 8 -> 1.028, 32 / 128 -> 1.027;
# fewer follow a changing flow sooner.
OVERHEAD_SAMPLES = 32

# Samples the per-item slope t is fitted on: sizes vary in the ramp and the tail only, so
# the fit remembers longer than o does. sweep flat (32 / 128 / 512 -> 1.027).
TRANSFER_SAMPLES = 128

# A pair of samples enters the Theil-Sen slope only when their sizes differ by this factor:
# closer sizes give slopes that are mostly noise. sweep flat (1.2 / 1.5 -> 1.027, 3 -> 1.028).
FIT_MIN_SIZE_RATIO = 1.5

# Straggle guard for whole waves: a task's relative scatter is never taken below this
# (GC, a descheduled worker: jitter no item model shows). sweep: 0.02 -> 1.032,
# 0.05 -> 1.027, 0.1 -> 1.032.
MIN_TASK_CV = 0.05

# Completions the queue replay remembers, in windows (plus 16): a completion's submit lies
# about one window back, so 4 windows leave ample margin.
QUEUE_HISTORY_WINDOWS = 4

# Completions over which `throughput` (items/s, for the trace) is measured: at least
# THROUGHPUT_MIN_TASKS and THROUGHPUT_TASKS_PER_WORKER per thread, so the span's edge error
# (up to a task per thread) stays a small share. Reporting only; no decision uses it.
THROUGHPUT_MIN_TASKS = 16
THROUGHPUT_TASKS_PER_WORKER = 6

# Tail: no batch takes more than 1/TAIL_BATCHES_PER_WORKER of a thread's share of the
# outstanding items, so the last wave stays balanced. sweep: 1 -> 1.027, 2 -> 1.075,
# 3 -> 1.070 (more splits the whole waves into twice the tasks).
TAIL_BATCHES_PER_WORKER = 1

# ... but no tail batch below this many overheads' worth of items: thinner ones cost more
# in overhead than they save in straggle. sweep flat (1 / 3 / 5 -> 1.027).
TAIL_FLOOR_OVERHEADS = 3.0

# Inline: the rest runs in the flow process when all of it costs less than this share of
# one task's overhead; a wrong call costs at most about one overhead.
# sweep: 0.5 -> 1.052, 1 / 2 -> 1.027.
INLINE_SHARE = 1.0

# With a warm-up prior the flow runs one item itself to learn c before any task, when the
# run has at least this many items per thread: that item delays the threads by at most
# ~1/LEARN_MIN_ITEMS_PER_THREAD of the run. sweep flat (4 / 8 / 16 -> 1.027).
LEARN_MIN_ITEMS_PER_THREAD = 8

# Fill: while the window holds the flow back and a worker thread idles, the flow runs items
# itself in slices of about FILL_SLICE_S, checking for completions between slices; the slice
# bounds how late a completion is seen (under a tenth of a Prefect task's ~30 ms overhead).
# Items above FILL_MAX_ITEM_S are not filled: one such item could delay the probe's result.
FILL_SLICE_S = 0.002
FILL_MAX_ITEM_S = 0.010

# Tasks in flight before the first one finishes: one probe, nothing committed blind, and its
# duration has no queueing in it. sweep: 1 -> 1.027, 2 -> 1.086, 4 -> 1.114.
COLD_START_WINDOW = 1

# Once the probe is seen the window opens to W at once, then by this many tasks per finished
# task up to the full window. sweep: 1 -> 1.027, 2 -> 1.033.
SLOW_START_PER_TASK = 1

# The full window: W running + W queued, so each thread has its next task waiting while the
# flow dispatches (the simulator's dispatch has no latency to hide: sweep 1 -> 1.023,
# 2 -> 1.027, 3 -> 1.026). Bounded because Prefect keeps tens of KB of bookkeeping per task call in
# the flow process.
WINDOW_PER_WORKER = 2
MIN_WINDOW = 2
MAX_WINDOW = 256

# The learn item is skipped when the warm-up's item cost puts the rest beyond this many times
# the inline rule's bar: a margin for the warm-up's few items (2 per thread) misjudging c.
LEARN_IF_WITHIN = 4.0

# With the end not known (a stream), `remaining` no longer caps a batch, and only the share
# cap and the jump size bound it, both through c + t: an estimate near zero (items faster than
# the timer shows) would ask the mechanism to read a near-endless batch ahead. So a stream's
# items count at least this much: about one Python call, the least `fn(item)` costs
# (o = 20 ms: share cap 6.5M items, jump 2M).
STREAM_ITEM_FLOOR_S = 1e-7

# Memory (a `Learned` from an earlier run): the first task seen must agree with it, or it is
# dropped and the estimates start from the observations. Its per-item cost is judged as drift
# is (beyond DRIFT_RATIO x or 1/x, widened by the items' scatter over the task's items). Its
# overhead, duration - compute of the first task to finish, is judged on a wider ratio: that
# first task also pays what a fresh flow pays once (the workers' first call, imports), and
# its size follows from o, so 4x off means a first wave 4x off its share cap, where one wave
# of the steering's observations costs less than running on. A dropped o costs nothing either
# way after a full wave: the replay's fit takes over then, as it does from the warm-up's.
MEMORY_OVERHEAD_RATIO = 4.0

def full_window(worker_threads: int) -> int:
    """The most tasks the controller keeps in flight on `worker_threads` threads (the preflight's
    memory estimate asks this too: harness.measure.admission)."""
    return min(MAX_WINDOW, max(MIN_WINDOW, WINDOW_PER_WORKER * worker_threads))


# The execution strategies a Decision names.
STRATEGIES = ("batched", "inline")



# --- data ---------------------------------------------------------------------------------


class ContractError(RuntimeError):
    """The mechanism broke the call order the controller relies on (a bug, not bad input)."""


def _check_counts(call: str, remaining: int, in_flight: int, more: bool, least: int) -> None:
    """TypeError / ValueError naming what a `decide` or `fill` call was given out of range."""
    if not isinstance(more, bool):
        raise TypeError(f"{call}: more must be a bool (is `remaining` a lower bound?), got {more!r}")
    if remaining < least:
        raise ValueError(f"{call} needs remaining >= {least}, got {remaining}")
    if in_flight < 0:
        raise ValueError(f"in_flight must be >= 0, got {in_flight}")


@dataclass(frozen=True)
class BatchObservation:
    """One finished task (or inline batch) as the mechanism saw it."""

    batch_size: int  # items in the batch as submitted
    items: int  # items actually processed (== batch_size normally)
    started: float  # flow-side clock (seconds) when the task was submitted
    finished: float  # flow-side clock when the flow saw it complete
    compute_s: float  # pure item work measured inside the task (sum over items)
    ok: int
    failed: int
    strategy: str = "batched"

    @property
    def duration_s(self) -> float:
        return self.finished - self.started


@dataclass(frozen=True)
class Decision:
    """What to submit next: `batch_size` items as `strategy`; keep <= `window` tasks in flight."""

    batch_size: int
    strategy: str  # "batched" (one task per batch) or "inline" (in the flow process, no task)
    reason: str  # short, human-readable why
    window: int


# --- the policy ---------------------------------------------------------------------------


class Controller:
    """Adaptive batch size and execution strategy from observed throughput (pure policy)."""

    def __init__(
        self,
        total_items: int,
        worker_threads: int,
        *,
        initial_batch_size: int = 1,
        log_size: int = 1000,
        prior_overhead_s: float | None = None,
        prior_item_s: float | None = None,
        prior_probe_s: float | None = None,
        prior_probe_filling_s: float | None = None,
        max_batch_size: int | None = None,
        allow_inline: bool = True,
        learned: Learned | None = None,
    ) -> None:
        """`total_items`: the items to run, or a lower bound on them when the mechanism streams
        a source of unknown length (it then passes a lower bound as `remaining` too, with
        `more=True`, until the source is exhausted). `max_batch_size`: no task gets more items
        than this (a user's bound: memory or latency per task); the flow's own inline batches
        are not tasks.
        `allow_inline`: False when the flow process must not run items (no learn, no inline
        rest, no fill): every item goes out in a task. `prior_item_s`: the mean work per item
        of the warm-up's tasks, used only to skip the learn item where the inline rule could not
        fire anyway. `prior_probe_s` and
        `prior_probe_filling_s`: the probe's round trip beyond its compute (submit to seen),
        measured at warm-up into a waiting flow and into one that fills meanwhile; they decide
        whether fill pays and what the task path costs before its first result.
        `learned`: what an earlier run of the same work learned (`learned()`): no probe and no
        learn item, the window open to W at once and the first wave at its batch size (capped
        as any batch is), until the first task seen agrees or the memory is dropped.
        """
        self._check_arguments(total_items, worker_threads, initial_batch_size, log_size, max_batch_size,
                              prior_overhead_s=prior_overhead_s, prior_item_s=prior_item_s,
                              prior_probe_s=prior_probe_s, prior_probe_filling_s=prior_probe_filling_s)
        self.max_batch_size = max_batch_size
        self.allow_inline = allow_inline
        self.total_items = total_items
        self.worker_threads = worker_threads
        self.window = full_window(worker_threads)  # once open
        # (time of the latest observation, decision), the newest `log_size` decisions
        self.log: collections.deque[tuple[float, Decision]] = collections.deque(maxlen=log_size)

        # the contract: the decision awaiting submitted/rerouted/cancel, with its in_flight and
        # the steering state before it (a cancelled decision leaves no trace)
        self._pending: tuple[Decision, int, tuple[object, ...]] | None = None
        self._outstanding = 0  # items submitted as tasks and not yet seen back
        self._submits = 0  # tasks submitted (the contract: never fewer than tasks seen)
        self._ended = 0  # tasks seen: finished or failed as a whole

        # steering
        self._size = initial_batch_size  # the model's batch size, before the tail and remaining caps
        self._fresh = False  # an observation arrived since the size last grew
        self._shrink_votes = 0
        self._shrink_seen = -1  # observation count at the last shrink vote
        self._now = 0.0  # finish time of the latest observation
        self._observed = 0  # observations, inline included
        self._items_observed = 0  # items of those observations: with _outstanding, what was handed out
        self._tasks_seen = 0  # batched tasks observed
        self._note: str | None = None  # memory kept or dropped: said by the next decision's reason
        # The pending decision's model size when it is a bulk one (not the probe, the tail or the
        # rest), else 0: learned() remembers it, before max_batch_size (a call's cap, not the work's).
        self._bulk_pending = 0
        self._bulk_items: collections.Counter[int] = collections.Counter()  # items per bulk size submitted
        self._batched_items: collections.Counter[int] = collections.Counter()  # ... per any size submitted

        self._start_estimates(prior_overhead_s, prior_item_s, prior_probe_s, prior_probe_filling_s)
        self._memory = learned  # until the first task seen contradicts it
        self._warm = learned is not None  # started from a memory (kept or dropped since)
        self._judged = False  # the first observation was held against the memory
        if learned is not None:
            self._queue._slope = learned.transfer_s  # kept while the sizes are all alike

    @staticmethod
    def _check_arguments(total_items: int, worker_threads: int, initial_batch_size: int, log_size: int,
                         max_batch_size: int | None, **priors: float | None) -> None:
        """ValueError naming the first argument out of range (the priors in the order given)."""
        if total_items < 1:
            raise ValueError(f"total_items must be >= 1, got {total_items}")
        if worker_threads < 1:
            raise ValueError(f"worker_threads must be >= 1, got {worker_threads}")
        if initial_batch_size < 1:
            raise ValueError(f"initial_batch_size must be >= 1, got {initial_batch_size}")
        for name, value in priors.items():
            if value is not None and not value >= 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        if log_size < 1:
            raise ValueError(f"log_size must be >= 1, got {log_size}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")

    def _start_estimates(self, prior_overhead_s: float | None, prior_item_s: float | None,
                         prior_probe_s: float | None, prior_probe_filling_s: float | None) -> None:
        """The estimates before any observation: empty, or the warm-up's priors where given."""
        # per-item cost
        self._costs: collections.deque[tuple[int, float]] = collections.deque(maxlen=COST_WINDOW_TASKS)
        self._streak: list[tuple[int, float]] = []
        self._streak_dir = 0
        self._drift: str | None = None  # set when a drift is confirmed, cleared by the next decision

        # per-task cost o + t·b
        self._queue = _QueueReplay(self.worker_threads, history=QUEUE_HISTORY_WINDOWS * self.window + 16,
                                   prior=prior_overhead_s)
        self._first_overhead: float | None = None  # min(duration - compute), until the replay has data
        self._prior_overhead = prior_overhead_s  # the runtime's, measured before; until a task finishes
        self._prior_item = prior_item_s  # c of the warm-up's tasks: whether learning can pay
        self._probe_waiting = prior_probe_s  # the probe's round trip into a waiting flow
        self._probe_filling = prior_probe_filling_s  # ... into a flow that runs items meanwhile

        # throughput, for the trace: (finished, items) of the recent completions
        span = max(THROUGHPUT_MIN_TASKS, THROUGHPUT_TASKS_PER_WORKER * self.worker_threads)
        self._completions: collections.deque[tuple[float, int]] = collections.deque(maxlen=span + 1)

    # --- estimates (read-only, for the trace) ---

    @property
    def per_item_s(self) -> float | None:
        """Mean work per item (seconds), or None before any item was observed (the memory's
        until then, when started from one)."""
        observed = self._observed_cost()
        if observed is None and self._memory is not None:
            return self._memory.per_item_s
        return observed

    def _observed_cost(self) -> float | None:
        items = sum(n for n, _ in self._costs)
        return sum(c for _, c in self._costs) / items if items else None

    @property
    def overhead_s(self) -> float | None:
        """Fixed per-task cost `o` (seconds), or None before any task finished (or a prior).

        Submit-to-seen time minus compute minus queueing (replayed) minus t·b: the
        worker-side cost plus the time the busy flow took to notice the completion.
        """
        fit = self._queue.fit()
        if self._memory is not None and len(self._queue.samples) < self.worker_threads:
            return self._memory.overhead_s  # as the warm-up's below, and from the same kind of run
        if self._prior_overhead is not None and len(self._queue.samples) < self.worker_threads:
            # Until a full wave was seen, the warm-up's figure (taken with every thread busy)
            # says more than a lone probe: it includes a flow too slow to feed W threads.
            return self._prior_overhead
        if fit is not None:
            return fit[0]
        return self._first_overhead if self._first_overhead is not None else self._prior_overhead

    @property
    def transfer_s(self) -> float:
        """Per-item cost of a task beyond its compute, `t` (seconds): moving and (de)serialising."""
        fit = self._queue.fit()
        if fit is not None:
            return fit[1]
        return self._memory.transfer_s if self._memory is not None else 0.0

    @property
    def throughput(self) -> float | None:
        """Items completed per second over the recent completions, or None."""
        if len(self._completions) < 2:
            return None
        first, *rest = self._completions
        span = rest[-1][0] - first[0]
        return sum(n for _, n in rest) / span if span > 0 else None

    def learned(self) -> Learned | None:
        """What this run learned, for the next run of the same work to start from, or None
        before enough was seen: a full wave (W tasks with their cost beyond work replayed),
        the least from which `o` is the run's own fit and not a prior or a lone task's.

        Its batch size is the item-weighted median of the bulk's sizes (the ramp, the tail
        and the rest's last task left out; with no bulk, of every task's): the size at least
        half of those items ran in, so a few odd sizes around it do not move it. A bulk size
        is the model's, before `max_batch_size`: a call's cap, not what the work asks for.
        """
        c = self._observed_cost()
        fit = self._queue.fit()
        if c is None or fit is None or len(self._queue.samples) < self.worker_threads:
            return None
        sizes = self._bulk_items or self._batched_items
        half, seen, size = sum(sizes.values()) / 2, 0, 1
        for size in sorted(sizes):
            seen += sizes[size]
            if seen >= half:
                break
        return Learned(per_item_s=c, item_cv=self._item_cv(), overhead_s=fit[0], transfer_s=fit[1],
                       batch_size=size, worker_threads=self.worker_threads, items=self._items_observed)

    # --- the calls the mechanism makes ---

    def observe(self, obs: BatchObservation) -> None:
        """Take in one finished task (or inline batch)."""
        if obs.items < 0 or obs.batch_size < 0 or obs.compute_s < 0 or obs.finished < obs.started:
            raise ValueError(f"inconsistent observation: {obs}")
        self._observed += 1
        self._items_observed += obs.items
        self._now = max(self._now, obs.finished)
        if self._memory is not None and not self._judged and (obs.items > 0 or obs.strategy == "batched"):
            self._judged = True
            self._judge_memory(obs)
        if obs.items > 0:
            self._add_cost(obs.items, obs.compute_s)
        if obs.strategy == "inline":
            return  # no task, no worker: says nothing about task overhead
        self._task_ended(obs)
        self._outstanding = max(0, self._outstanding - obs.batch_size)
        self._tasks_seen += 1
        self._completions.append((obs.finished, obs.items))
        self._queue.finished(obs.started, obs.finished, obs.compute_s, obs.items)
        raw = max(0.0, obs.duration_s - obs.compute_s)  # includes queueing: an upper bound
        self._first_overhead = raw if self._first_overhead is None else min(self._first_overhead, raw)
        self._fresh = True

    def _judge_memory(self, obs: BatchObservation) -> None:
        """The first task (or inline batch) seen against the memory: kept, or dropped and the
        estimates reset to the observations (docs/controller.md, "Memory")."""
        m = self._memory
        assert m is not None
        said = []
        if obs.items > 0:
            # A task of n items scatters sqrt(n) times less than one item (as drift is judged).
            ratio = DRIFT_RATIO * (1 + m.item_cv / math.sqrt(obs.items))
            seen = max(obs.compute_s / obs.items, STREAM_ITEM_FLOOR_S)
            known = max(m.per_item_s, STREAM_ITEM_FLOOR_S)
            if not known / ratio <= seen <= known * ratio:
                said.append(f"per-item cost {_ms(seen)} is {max(seen / known, known / seen):.2g}x "
                            f"{'above' if seen > known else 'below'} the remembered {_ms(known)} "
                            f"(beyond {ratio:.2g}x)")
        if obs.strategy == "batched":
            expected = m.overhead_s + m.transfer_s * obs.items
            raw = max(0.0, obs.duration_s - obs.compute_s)
            if expected > 0 and not expected / MEMORY_OVERHEAD_RATIO <= raw <= expected * MEMORY_OVERHEAD_RATIO:
                said.append(f"the task's cost beyond its work {_ms(raw)} is beyond "
                            f"{MEMORY_OVERHEAD_RATIO:g}x the remembered {_ms(expected)}")
        if said:
            self._memory = None
            self._queue._slope = 0.0  # t from the observations alone
            self._note = self._drift = f"memory dropped: {'; '.join(said)}"
        elif obs.strategy == "batched" or obs.items > 0:
            seen = obs.compute_s / obs.items if obs.items else None
            self._note = (f"memory kept: the first task agrees with it"
                          f"{f' (c={_ms(seen)}/item)' if seen is not None else ''}")

    def task_failed(self, started: float, finished: float, batch_size: int) -> None:
        """A task that failed as a whole was seen: its thread is free, its batch will re-run."""
        self._task_ended(f"a failed task submitted at {started}")
        self._outstanding = max(0, self._outstanding - batch_size)
        self._queue.finished(started, finished, None, batch_size)

    def _task_ended(self, what: object) -> None:
        self._ended += 1
        if self._ended > self._submits:
            raise ContractError(f"{self._ended} tasks seen but {self._submits} submitted: {what} "
                                "was never answered with submitted() or rerouted()")

    def decide(self, remaining: int, in_flight: int, *, more: bool = False) -> Decision:
        """The next batch: `remaining` items are not yet submitted, `in_flight` tasks run.

        `more`: `remaining` is only a lower bound, more items may follow (a stream not yet
        exhausted). The end-game rules then wait for the end to be known, and the batch may
        hold more than `remaining` items: the mechanism reads ahead that far, and when the
        source ends first it cancels the decision and decides again with `more=False`.
        Must be followed by `submitted`, `rerouted` or `cancel` before the next `decide`.
        """
        if self._pending is not None:
            raise ContractError(f"decide() again before submitted/rerouted/cancel of {self._pending[0]}")
        _check_counts("decide()", remaining, in_flight, more, least=1)  # nothing left: nothing to decide
        steering = self._steering()
        self._bulk_pending = 0
        decision = self._decide(remaining, in_flight, more)
        note, self._note = self._note, None
        if note is not None and note not in decision.reason:
            decision = Decision(decision.batch_size, decision.strategy, f"{note}; {decision.reason}", decision.window)
        self._pending = (decision, in_flight, steering)
        self.log.append((self._now, decision))
        return decision

    def submitted(self, decision: Decision) -> None:
        """`decision` went out as decided: one task submitted, or the inline batch runs now."""
        self._resolve(decision, decision.strategy)

    def rerouted(self, decision: Decision, strategy: str) -> None:
        """A breaker sent `decision` down `strategy` instead (one task, or inline)."""
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown strategy {strategy!r}, expected one of {STRATEGIES}")
        self._resolve(decision, strategy)

    def cancel(self, decision: Decision) -> None:
        """Nothing was submitted for `decision` (every path refused, or a stream ended before
        the batch was read): forget it, steering included, so the next `decide` starts from
        the same state."""
        self._resolve(decision, None)

    def _resolve(self, decision: Decision, strategy: str | None) -> None:
        if self._pending is None or self._pending[0] is not decision:
            raise ContractError(f"{decision} is not the pending decision ({self._pending})")
        _, in_flight, steering = self._pending
        self._pending = None
        if strategy is None:
            (self._size, self._fresh, self._shrink_votes, self._shrink_seen, self._drift, self._note) = steering
        if strategy == "batched":
            self._batched_items[decision.batch_size] += decision.batch_size
            if self._bulk_pending and decision.strategy == "batched":
                self._bulk_items[self._bulk_pending] += decision.batch_size
            self._submits += 1
            self._queue.submitted(in_flight)
            self._outstanding += decision.batch_size

    def fill(self, remaining: int, in_flight: int, *, more: bool = False) -> Decision | None:
        """Items to run in the flow process while it would otherwise wait, or None.

        Asked when the window is full and nothing has finished. Only while a worker thread
        idles (in_flight < W: the probe and slow start), so it takes no thread's work.
        `more` as for `decide`; a fill never holds more than `remaining` items.
        """
        if self._pending is not None:
            raise ContractError(f"fill() before submitted/rerouted/cancel of {self._pending[0]}")
        _check_counts("fill()", remaining, in_flight, more, least=0)
        if remaining < 1 or in_flight >= self.worker_threads or not self.allow_inline:
            return None
        c, o = self.per_item_s, self.overhead_s
        if c is not None and o is not None and not more and \
                (inline := self._inline_rest(remaining, c, o)) is not None:
            self.log.append((self._now, inline))
            return inline
        if not self._fill_pays():
            return None
        if c is None:
            size, why = 1, "learns the item cost while the probe runs"
        elif c > FILL_MAX_ITEM_S:
            return None
        else:
            size = max(1, _whole(math.floor, FILL_SLICE_S / c)) if c > 0 else remaining
            why = f"a {_ms(FILL_SLICE_S)} slice at c={_ms(c)}/item"
        size = min(size, remaining)
        # The window stays shut until the probe is seen (docs/controller.md, "Fill").
        window = self._window() if self._tasks_seen else COLD_START_WINDOW
        decision = Decision(size, "inline", f"fill: {in_flight} of {self.worker_threads} threads busy, "
                            f"the window is full; the flow runs {size} itself ({why})", window)
        self.log.append((self._now, decision))
        return decision

    # --- internals ---

    def _steering(self) -> tuple[object, ...]:
        """The state `_steer` changes: restored when a decision is cancelled."""
        return (self._size, self._fresh, self._shrink_votes, self._shrink_seen, self._drift, self._note)

    def _decide(self, remaining: int, in_flight: int, more: bool) -> Decision:
        c, o = self.per_item_s, self.overhead_s
        # Learn and inline judge the whole rest: both wait for its end to be known.
        if c is None and o is not None and not self._tasks_seen and not in_flight and not more \
                and self._learns(remaining, o):
            return Decision(1, "inline", f"learn: the flow runs one item itself before any task "
                            f"(o={_ms(o)} measured at warm-up)", COLD_START_WINDOW)
        if c is not None and o is not None and in_flight < self.worker_threads and self.allow_inline and not more:
            if (inline := self._inline_rest(remaining, c, o)) is not None:
                return inline  # only with a thread idle: otherwise it would take a busy thread's core
        memory = self._memory
        if c is not None and o is not None and not self._tasks_seen and memory is not None:
            # No probe: the first wave at the learned size (a memory of 100k items on 500 makes
            # no giant task: whole waves over the items given).
            t = self.transfer_s
            # The learned size is what the run settled on, the effects the model leaves out (a
            # flow too slow to feed many threads) included: taken as it is, but for the nearest
            # size that splits these items into whole waves (6,244 learned on 100,000 items over
            # 16 threads is one wave of 6,250, not two of 3,125). A stream's first batch is no
            # bigger than the stream's plan: its end may come before a learned size's worth.
            learned, reason = memory.batch_size, f"from memory: {memory.describe()}; first wave at "
            if more:
                target, why = self._target(remaining, max(c + t, STREAM_ITEM_FLOOR_S), o, more)
                self._size = min(_round(target), learned)
                reason += f"{self._size} (the stream's plan: {why})"
            else:
                self._size = self._whole_waves_near(learned, remaining)
                reason += f"{self._size} (whole waves of {self.worker_threads} over {remaining + self._outstanding} items)"
            return self._shaped(remaining, c, t, o, more, reason)
        if c is None or o is None or not self._tasks_seen:
            size = self._capped(min(self._size, remaining))
            return Decision(size, "batched", f"cold start: one probe task of {size} before anything is known",
                            COLD_START_WINDOW)

        t = self.transfer_s
        ct = max(c + t, STREAM_ITEM_FLOOR_S) if more else c + t  # what an item costs inside a task
        target, why = self._target(remaining, ct, o, more)
        reason = self._steer(target, why, ct, o, t, remaining, more)
        return self._shaped(remaining, c, t, o, more, reason)

    def _shaped(self, remaining: int, c: float, t: float, o: float, more: bool, reason: str) -> Decision:
        """A task of the model's size, thinner at the tail, within `remaining` and max_batch_size."""
        size = self._size
        if more:  # the end is not in sight: no tail, and the mechanism reads ahead for the batch
            self._bulk_pending = size
            return self._batched(size, reason)
        tail_cap = math.ceil((remaining + self._outstanding)
                             / (TAIL_BATCHES_PER_WORKER * self.worker_threads))
        if size > tail_cap:
            floor = _whole(math.ceil, TAIL_FLOOR_OVERHEADS * o / (c + t)) if c + t > 0 else 1
            size = max(tail_cap, min(size, floor))
            reason = f"tail: {remaining} left, {self._outstanding} in flight, a thread's share at most; {reason}"
        self._bulk_pending = size if size == self._size <= remaining else 0  # not thinned for the tail or the rest
        return self._batched(max(1, min(size, remaining)), reason)

    def _batched(self, size: int, reason: str) -> Decision:
        """A task of `size` items, clamped to the user's max_batch_size."""
        if self._capped(size) < size:
            size = self._capped(size)
            reason = f"capped at max_batch_size {size}; {reason}"
        return Decision(size, "batched", reason, self._window())

    def _learns(self, remaining: int, o: float) -> bool:
        """Whether the flow runs one item before any task, for the inline rule to judge the rest."""
        if not self.allow_inline or self.total_items < LEARN_MIN_ITEMS_PER_THREAD * self.worker_threads:
            return False
        if self._prior_item is None:
            return True
        # Skipped where the warm-up's items put the rest far beyond the rule's bar (64 threads
        # idled 0.2 s for one coarse item).
        return remaining * self._prior_item < LEARN_IF_WITHIN * INLINE_SHARE * self._inline_bar(o)[0]

    def _capped(self, size: int) -> int:
        return size if self.max_batch_size is None else min(size, self.max_batch_size)

    def _inline_rest(self, remaining: int, c: float, o: float) -> Decision | None:
        bar, what = self._inline_bar(o)
        if remaining * c >= INLINE_SHARE * bar:
            return None
        return Decision(remaining, "inline",
                        f"inline: remaining work {_ms(remaining * c)} < {INLINE_SHARE:.0%} of {what} {_ms(bar)}",
                        self._window())

    def _inline_bar(self, o: float) -> tuple[float, str]:
        """What the rest must cost less than to run inline, and a few words on what that is."""
        if self._tasks_seen:
            return o, "one task's overhead"
        # The warm-up's figure is thread time per task with W tasks overlapping, not one
        # task's latency: divided by W it is the least a task could take (docs/controller.md).
        bar, what = o / self.worker_threads, f"one task's overhead (measured at warm-up, per thread of {self.worker_threads})"
        probe = self._probe_path(o)
        if probe is not None and probe > bar:
            bar, what = probe, "the task path's start (the probe's round trip and a task, measured at warm-up)"
        return bar, what

    def _probe_path(self, o: float) -> float | None:
        """Work the flow could run itself in the time the task path needs to beat it, or None
        without the warm-up's probe figures (docs/controller.md, "Windows, the start and tiny work").

        Inline costs R·c. The task path first waits for the probe (L, filling or not), then runs
        the rest over W threads at a task's cost o each: L + o + R·c/W, and while it fills the
        flow has run L of the work itself. Inline wins while R·c < g·(L_wait + o) waiting, or
        L_fill + g·o filling, g = W/(W-1) (1 on one thread: the flow is no faster than it).
        """
        if self._probe_waiting is None:
            return None
        w = self.worker_threads
        gain = w / (w - 1) if w > 1 else 1.0
        if self._fill_pays() and self._probe_filling is not None and w > 1:
            return self._probe_filling + gain * o
        return gain * (self._probe_waiting + o)

    def _fill_pays(self) -> bool:
        """Whether the flow running items while a thread idles is a gain (docs/controller.md, "Fill").

        The flow's items can hold the GIL that the scheduler and the clients in its process
        need: every task in flight then comes back later. While the probe is out, filling runs
        L_fill of work in the flow; waiting lets the W threads start L_fill - L_wait sooner. It
        pays while L_fill < W/(W-1)·L_wait; unknown figures (no warm-up) count as paying.
        """
        if self._probe_waiting is None or self._probe_filling is None or self.worker_threads < 2:
            return True
        w = self.worker_threads
        return self._probe_filling * (w - 1) < w * self._probe_waiting

    def _target(self, remaining: int, ct: float, o: float, more: bool) -> tuple[float, str]:
        """The model's batch size and a few words on which limit set it (docs/controller.md, "Target");
        `ct`: what an item costs inside a task, c + t."""
        if ct <= 0:
            return math.inf, "items cost nothing measurable"
        w = self.worker_threads
        # Rounded down: no more items than it takes to bring the overhead down to the share.
        share_b = max(1, _whole(math.floor, o * (1 - TARGET_OVERHEAD_SHARE) / (TARGET_OVERHEAD_SHARE * ct)))
        items = remaining + self._outstanding
        if more:
            # The whole-wave plan below tends to the share cap as the items grow without bound;
            # with the end not known, that limit is the plan, but a batch holds at most 1/(W-1) of
            # the items handed out before it: whenever the end comes, no task holds more than a
            # thread's share of all the items (B <= (N - B)/(W - 1) is B <= N/W), and the size
            # still grows W/(W-1)-fold a batch, doubling on two threads. A batch of at most
            # JUMP_OVERHEADS overheads of work may go beyond that share (it straggles no longer
            # than the growth to it would cost in overheads), and so may the items already
            # read, known to exist (docs/controller.md, "Unknown length").
            handed = self._items_observed + self._outstanding
            fair = _whole(math.floor, handed / (w - 1)) if w > 1 else share_b
            dominated = _whole(math.floor, JUMP_OVERHEADS * o / ct)
            b = max(1, min(share_b, max(remaining, fair, dominated)))
            why = f"end not known ({items}+ items): overhead {TARGET_OVERHEAD_SHARE:.0%} of task at {share_b}"
            if b < share_b:
                why += f", at most {b} ({handed} handed out over {w - 1} threads, {JUMP_OVERHEADS:g} overheads' work)"
            return b, why
        per_thread = items * ct / w  # the work left per thread, in task time
        # k whole waves cost k·o + per_thread + the last wave's straggle z·cv·per_thread/k.
        z = math.sqrt(2 * math.log(w)) if w > 1 else 0.0
        item_cv = self._item_cv()
        if o <= 0:
            return share_b, f"overhead {TARGET_OVERHEAD_SHARE:.0%} of task at {share_b}"
        waves = 1.0
        for _ in range(3):  # the guard depends on the batch size, the batch size on the waves
            guard = z * max(MIN_TASK_CV, item_cv / math.sqrt(max(1.0, items / (w * waves))))
            waves = max(1.0, math.sqrt(guard * per_thread / o), items / (w * share_b))
        k = max(1, math.ceil(waves - 1e-9))
        b = math.ceil(items / (k * w))
        return b, f"{k} whole waves of {w} over {items} items (guard {guard:.2f}, share cap {share_b})"

    def _item_cv(self) -> float:
        """Relative scatter of one item's cost, from the recent tasks' per-item costs (a task
        of n items scatters sqrt(n) times less than one item); 0 with fewer than 3 tasks."""
        if len(self._costs) < 3:
            return 0.0
        items = sum(n for n, _ in self._costs)
        mean = sum(cost for _, cost in self._costs) / items if items else 0.0
        if mean <= 0:
            return 0.0
        var = sum(n * (cost / n - mean) ** 2 for n, cost in self._costs if n > 0) / len(self._costs)
        return math.sqrt(var) / mean

    def _steer(self, target: float, why: str, ct: float, o: float, t: float, remaining: int, more: bool) -> str:
        """Move `self._size` toward `target` with the growth cap, hysteresis and confirmation."""
        size = self._size
        share = o / (o + size * ct) if o + size * ct > 0 else 0.0
        estimates = f"c+t={_ms(ct)}/item (t={_ms(t)}), o={_ms(o)}/task, overhead {share:.0%} of task"
        drift, self._drift = self._drift, None
        if drift is not None and target < size:
            self._size = max(1, _round(target))
            self._shrink_votes = 0
            return f"shrink to {self._size}: {drift}; {why}; {estimates}"
        if target > size * (1 + HOLD_BAND) and _round(target) > size:
            self._shrink_votes = 0
            # Up to the overhead-dominated size it may jump in one step (docs/controller.md).
            dominated = _whole(math.floor, JUMP_OVERHEADS * o / ct) if ct > 0 else _HUGE
            cap = max(_round(size * GROWTH_MAX), dominated)
            # A target within the hold band of the cap counts as reached, as it does for the
            # size held; a capped size is trimmed so the items still split into whole waves:
            # stopping short would leave a partial last wave (docs/controller.md, "Steering").
            # With the end not known there are no whole waves to keep.
            if target <= cap * (1 + HOLD_BAND):
                new = _round(target)
            else:
                new = cap if more else self._whole_waves_under(cap, remaining)
            if not self._fresh and new * ct > JUMP_OVERHEADS * o:
                return f"hold {size}: growth waits for a new observation; {estimates}"
            if not more and self._outstanding and remaining < self.worker_threads * new:
                # The whole-wave plan counts the items in flight as if they could be re-split;
                # they cannot, so bigger tasks now would sit behind them on a few threads only.
                # A warm start sent its first wave blind, at a remembered size that may be far
                # below the plan's one wave: the items not yet submitted then make one whole
                # wave of their own, behind in-flight tasks far smaller (docs/controller.md, "Memory").
                even = math.ceil(remaining / self.worker_threads)
                if not (self._warm and even > size * (1 + HOLD_BAND)):
                    return (f"hold {size}: the {remaining} items not yet submitted make fewer than "
                            f"{self.worker_threads} tasks of {new}; {estimates}")
                new = even
                why = f"the {remaining} items not yet submitted as one whole wave of {self.worker_threads}"

            self._fresh = False
            self._size = new
            prefix = f"{drift}; " if drift else ""
            return f"{prefix}grow x{new / size:.2g} to {new}: {why}; {estimates}"
        if target < size / (1 + HOLD_BAND) and _round(target) < size:
            if self._shrink_seen != self._observed:  # one vote per new observation
                self._shrink_seen = self._observed
                self._shrink_votes += 1
            if self._shrink_votes < SHRINK_CONFIRM:
                return (
                    f"hold {size}: target {_round(target)} below, "
                    f"confirming {self._shrink_votes}/{SHRINK_CONFIRM}; {estimates}"
                )
            self._shrink_votes = 0
            self._size = max(1, _round(target))
            return f"shrink to {self._size}: {why}; {estimates}"
        self._shrink_votes = 0
        return f"hold {size}: target {_round(target)} within ±{HOLD_BAND:.0%}; {estimates}"

    def _whole_waves_near(self, size: int, remaining: int) -> int:
        """The size nearest `size` (by ratio, at most the hold band above it) that splits the
        outstanding items into whole waves of W tasks. The one of more waves is never above
        `size`, so there is always one that fits."""
        items = remaining + self._outstanding
        exact = items / (self.worker_threads * size)
        sizes = {math.ceil(items / (waves * self.worker_threads))
                 for waves in (max(1, math.floor(exact)), max(1, math.ceil(exact)))}
        fits = [b for b in sizes if b <= size * (1 + HOLD_BAND)]
        return min(fits, key=lambda b: abs(math.log(b / size)))

    def _whole_waves_under(self, cap: int, remaining: int) -> int:
        """The largest size up to `cap` that splits the outstanding items into whole waves of W
        tasks: a capped size would leave a partial last wave (docs/controller.md, "Steering")."""
        items = remaining + self._outstanding
        waves = math.ceil(items / (self.worker_threads * cap))
        return max(1, min(cap, math.ceil(items / (waves * self.worker_threads))))

    def _window(self) -> int:
        """Every thread busy once the probe is seen, then SLOW_START_PER_TASK more per finished task."""
        opened = self.worker_threads if self._tasks_seen or self._memory is not None else 0
        return min(self.window, max(MIN_WINDOW, opened + SLOW_START_PER_TASK * self._tasks_seen))

    def _add_cost(self, items: int, compute: float) -> None:
        """Fold one observation into the per-item cost estimate, watching for drift."""
        estimate = self._observed_cost()  # a memory is judged once, in _judge_memory
        per_item = compute / items
        direction = 0
        if estimate is not None and estimate > 0:
            # The ratio widens with the spread the recent tasks already show (heavy-tailed
            # items in small batches), so their ordinary scatter is not taken for drift.
            seen = [c / n for n, c in self._costs]
            mean = sum(seen) / len(seen)
            spread = math.sqrt(sum((x - mean) ** 2 for x in seen) / len(seen))  # pstdev, without Fractions
            ratio = DRIFT_RATIO * (1 + (spread / mean if mean > 0 else 0.0))
            if per_item > ratio * estimate:
                direction = 1
            elif per_item * ratio < estimate:
                direction = -1
        if direction == 0:
            self._costs.extend(self._streak)  # a broken streak was noise: count it
            self._streak, self._streak_dir = [], 0
            self._costs.append((items, compute))
            return
        if direction != self._streak_dir:
            self._costs.extend(self._streak)
            self._streak, self._streak_dir = [], direction
        self._streak.append((items, compute))
        if len(self._streak) >= DRIFT_CONFIRM:
            if direction > 0:
                self._drift = f"drift: per-item cost rose {per_item / estimate:.1f}x"
            elif per_item > 0:
                self._drift = f"drift: per-item cost fell {estimate / per_item:.1f}x"
            else:
                self._drift = "drift: items now cost nothing measurable"
            self._costs.clear()
            self._costs.append(self._streak[-1])  # the newest: the earlier may straddle the change
            self._streak, self._streak_dir = [], 0
            self._fresh = True




class _QueueReplay:
    """Per-task cost beyond compute, with the queueing taken out by replaying the window.

    Each submit carries `in_flight`, the tasks already in the system when it arrived; each
    completion is seen in order. W threads take tasks first come, first served, so a task
    behind `ahead` >= W others starts when the (ahead - W + 1)-th completion after its submit
    is seen; with `ahead` < W it starts at once. Its cost is finished - start - compute, a
    sample of o + t·b. A completion is matched to its submit through the flow clock: it was
    submitted after the m completions seen before its `started` time, and among the submits
    made between completion m and m+1 its rank is that of its `started` time.
    (docs/controller.md, "Overhead".)
    """

    def __init__(self, threads: int, history: int, prior: float | None = None) -> None:
        self.threads = threads
        self.history = history
        self.prior = prior  # the warm-up's overhead: a sample at b = 1 for the slope
        self.fins: list[float] = []  # seen-complete times, sorted; global index = offset + i
        self.offset = 0
        self.starts: list[float] = []  # submit times of seen tasks, sorted (recent history)
        self.groups: dict[int, list[int]] = {}  # m -> [in_flight at the first submit after m seen, submits]
        self.samples: collections.deque[tuple[int, float]] = collections.deque(maxlen=TRANSFER_SAMPLES)
        self.unmatched = 0  # completions no recorded submit explains: no sample taken
        self._fit: tuple[float, float] | None = None
        self._dirty = False
        self._slope = 0.0  # the last identified t: kept while recent sizes are all alike
        self._since_slope = 0  # samples since the slope was last fitted

    def fit(self) -> tuple[float, float] | None:
        """(o, t): Theil-Sen slope over sizes that differ, o the median residual; None without samples."""
        if not self._dirty:
            return self._fit
        self._dirty = False
        if not self.samples:
            return self._fit
        b = np.array([n for n, _ in self.samples], dtype=float)
        x = np.array([v for _, v in self.samples], dtype=float)
        # The slope moves only when sizes vary: refit on a new size, else every SLOPE_REFIT.
        newest, previous = (b[-1], b[-2]) if len(b) > 1 else (b[-1], 0.0)
        self._since_slope += 1
        if max(newest, previous) >= FIT_MIN_SIZE_RATIO * max(1.0, min(newest, previous)) or \
                self._since_slope >= _SLOPE_REFIT:
            self._since_slope = 0
            fb, fx = b, x
            if self.prior is not None:
                fb, fx = np.append(b, 1.0), np.append(x, self.prior)
            i, j = _pairs(len(fb))
            lo, hi = np.minimum(fb[i], fb[j]), np.maximum(fb[i], fb[j])
            usable = hi >= FIT_MIN_SIZE_RATIO * np.maximum(lo, 1.0)
            if usable.any():
                slopes = (fx[j] - fx[i])[usable] / (fb[j] - fb[i])[usable]
                self._slope = max(0.0, float(np.median(slopes)))
        recent = slice(max(0, len(b) - OVERHEAD_SAMPLES), None)
        o = max(0.0, float(np.median(x[recent] - self._slope * b[recent])))
        self._fit = (o, self._slope)
        return self._fit

    def submitted(self, in_flight: int) -> None:
        """One submit, `in_flight` tasks already in the system."""
        m = self.offset + len(self.fins)
        group = self.groups.get(m)
        if group is None:
            self.groups[m] = [in_flight, 1]
        else:
            group[1] += 1

    def finished(self, started: float, finished: float, compute: float | None, size: int) -> None:
        """One completion; `compute` None for a task that failed (it freed a thread, no sample)."""
        if compute is not None:
            self._replay(started, finished, compute, size)
        bisect.insort(self.starts, started)
        bisect.insort(self.fins, finished)
        if len(self.fins) > self.history:
            del self.fins[0]
            self.offset += 1
            for m in [m for m in self.groups if m < self.offset - 1]:
                del self.groups[m]
        if len(self.starts) > self.history:
            del self.starts[0]

    def _replay(self, started: float, finished: float, compute: float, size: int) -> None:
        if self.offset and started < self.fins[0]:
            return  # submitted before the remembered history: its place in the queue is lost
        seen_before = bisect.bisect_right(self.fins, started)
        m = self.offset + seen_before
        group = self.groups.get(m)
        if group is None:
            self.unmatched += 1  # clocks out of order (the contract itself is checked by the controller)
            return
        first_in_flight, submits = group
        low = self.fins[seen_before - 1] if seen_before else -math.inf
        rank = bisect.bisect_left(self.starts, started) - bisect.bisect_left(self.starts, low)
        ahead = first_in_flight + min(max(rank, 0), submits - 1)
        begin = started
        if ahead >= self.threads:
            freed_by = m + ahead - self.threads - self.offset  # that completion, in self.fins
            if freed_by >= len(self.fins):
                return  # not FIFO here (it started before a thread was free by our count)
            begin = max(started, self.fins[freed_by])
        if begin + compute <= finished:
            self.samples.append((size, finished - begin - compute))
            self._dirty = True


# Samples between two slope fits while the batch size holds still: the fit is the
# controller's costliest step (~0.5 ms for 128 samples), and same-size samples barely move it.
_SLOPE_REFIT = 16


@functools.lru_cache(maxsize=8)
def _pairs(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs i < j of n samples (cached: the sample count is mostly constant)."""
    return np.triu_indices(n, 1)


_HUGE = 1 << 62  # "unbounded" as an int: every size is capped by `remaining` in the end


def _whole(to_int: Callable[[float], int], x: float) -> int:
    """`to_int(x)` (math.floor or math.ceil), with inf and overflow mapped to _HUGE."""
    return _HUGE if x >= _HUGE else to_int(x)


def _round(x: float) -> int:
    """Nearest integer >= 1 (inf -> _HUGE)."""
    return max(1, _whole(math.floor, x + 0.5))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
