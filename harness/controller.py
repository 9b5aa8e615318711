"""The adaptive batching policy: observations in, a typed `Decision` out. Pure policy.

The controller imports neither Prefect nor Dask, has no clock (time arrives as data in each
`BatchObservation`) and never submits anything. The mechanism streams items through a
bounded window of in-flight tasks: before each submit it calls `decide(remaining,
in_flight)`, submits `decision.batch_size` items as `decision.strategy`, keeps at most
`decision.window` tasks in flight, and calls `observe()` for each task as it sees it finish,
in that order. When the window is full and nothing has finished it may ask `fill()` for
items to run in the flow process meanwhile (observed like any inline batch). (The controller relies on that order: one `decide` per submit, one
`observe` per completion.)

The policy in a few sentences
-----------------------------
Estimate the work per item `c` and the effective overhead per task `o` from the
observations; aim the batch size at the smaller of the makespan optimum sqrt(N·o/(W·c)) and
the size at which the overhead is `TARGET_OVERHEAD_SHARE` of a task; move there at most 2x
per step, hold still inside a ±`HOLD_BAND` band, shrink only on a repeated signal (or a
confirmed drift, at once); keep at least `TAIL_BATCHES_PER_WORKER` batches per worker
thread among the remaining items so the last wave is small; run the rest inline when all of
it costs less than half a task's overhead.

Estimates
---------
- `c` = sum(compute_s) / sum(items) over the last `COST_WINDOW_TASKS` tasks (item-weighted,
  so heavy-tailed items count with their real weight). Drift is acted on AdaptiveCore
  style, after a repeated signal: `DRIFT_CONFIRM` tasks in a row beyond `DRIFT_RATIO` times
  the estimate (the ratio widened by the scatter the recent tasks already show) replace
  the history with the newest task. Lone outliers are held back and folded in as noise.
- `o`: a task's duration (submit -> seen complete) minus its compute is fooled by
  queueing: with 2·W tasks in flight each one waits about a task time. The completion-rate
  estimate o ≈ W/R - b·c is not fooled by queueing, but its span cuts through up to W-1
  running tasks at each end, an error of ~(W-1)·(task time)/k, which swamps `o` once `o` is
  a few % of a task (in the simulator it read 0 to 3.5 s for a 20 ms overhead). So the
  queueing is replayed instead (`_QueueReplay`): `in_flight` at each `decide` says how many
  tasks were ahead of that submit; with W threads serving first come first served, a task
  behind `ahead` >= W others started when the (ahead-W+1)-th later completion was seen. Its
  overhead is then finished - start - compute; the estimate is the median of the last
  `OVERHEAD_SAMPLES` tasks (within 9 % of the true 20 ms under 10 % noise, simulated).
  What the flow adds is kept on purpose: the serial dispatch cost of an unqueued task and
  the delay before a flow busy submitting notices a completion. When one flow process
  cannot feed W threads (RUNTIME.md: 11-50 ms per task, serial), that delay grows, `o`
  grows with it, and batches grow until each task lasts long enough to keep every thread
  fed (simulated W=8, 11 ms dispatch: as good as the best static size). Before the replay
  has a sample, min(duration - compute) stands in (an upper bound).

Target and guards
-----------------
- model: N items in batches of b on W threads take about N·c/W + N·o/(W·b) + b·c, smallest
  at b = sqrt(N·o/(W·c)) with N the run's total; the duration band caps it at
  o·(1-f)/(f·c) (f = `TARGET_OVERHEAD_SHARE`, rounded down): beyond that a bigger batch buys
  < f of throughput and costs straggle and slower reaction to drift. For expensive items
  (o/(o+c) < f) this is 1: per-item tasks stay.
- growth: straight to the overhead-dominated size o/c (a task whose work is at most its
  overhead lasts at most ~2 overheads, so a wrong estimate costs little), beyond it at most
  `GROWTH_MAX` (2x) per step, and only with a new observation since the last growth, except
  while the task stays overhead-dominated.
- hysteresis: a target within ±`HOLD_BAND` keeps the current size; shrinking needs
  `SHRINK_CONFIRM` decisions in a row, each after a new observation.
- tail: at most ceil(remaining / (`TAIL_BATCHES_PER_WORKER`·W)) items per batch, so every
  thread keeps work to the end and the last wave is about one small batch per thread; not
  below `TAIL_FLOOR_OVERHEADS`·o/c items (still mostly work), never above remaining.
- inline: with a thread idle (fewer tasks in flight than threads) and the whole remaining work below `INLINE_SHARE` of one task's overhead, the
  rest runs in the flow process: no task can beat that. Before any task has finished, the
  overhead the mechanism measured while warming the runtime up (`prior_overhead_s`, not a
  property of the items) stands in, so a tiny workload goes inline as soon as one filled
  item has shown what an item costs.
- fill: while the window holds the flow back and a thread idles, `fill()` hands the flow a
  slice of items to run itself between checks for completions: the probe's wait becomes
  work, which is most of a tiny workload.
- window: a single probe task first (`COLD_START_WINDOW`), then it opens by one task per
  completion (TCP-like slow start) up to `WINDOW_PER_WORKER`·W: W running, W queued.

The simulator in tests/controller_sim.py (W threads, per-task overhead, serial flow-side
dispatch, multiplicative noise, drift, FIFO or Dask-like worker queues) chose every
constant; "sim" figures below are geometric-mean ratios of makespan to the best static
batch size over 13 workloads (the 7 of tests/test_controller.py plus W=1, W=16/32 with slow
dispatch, 2M items, 65 ms overhead, 5 ms items), 1.036 with the values chosen.

Known limits (simulated): many threads behind a very slow flow ramp up slowly, because the
mechanism refills a whole window before it looks at completions and growth needs a new
observation (W=32 at 11 ms per submit: 1.22x the best static size; W=16 at 50 ms: 1.35x);
runs with well under a second of work pay for the probe and the ramp (2,000 items of
0.2 ms: 1.6x of a 0.22 s best static).
"""

from __future__ import annotations

import bisect
import collections
import dataclasses
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass

# --- tuning constants ---------------------------------------------------------------------

# At most this growth per step. joblib's cap, and the issue's ("~2x per step from cold
# start"): a batch is never more than twice a size already observed. sim: 1.5 -> 1.046,
# 2 -> 1.036, 4 -> 1.048 (overshoots the 32-thread case).
GROWTH_MAX = 2.0

# The duration band, scale-free: batches no bigger than needed to bring the task overhead
# down to this share. At 3 % a 0.5 s item with a 20 ms overhead (3.8 % per item) stays at
# b=1 as long as single items are estimated above ~0.33 s; at 2 % it flips between 1 and 3
# (sim 1.033: larger batches on the coarse workload). 5 % gives away ~1.7 % on every fine
# workload (sim 1.048). The fine 0.2 ms / 20 ms workload settles near 3,200 items (0.7 s
# tasks, inside joblib's 0.2-2 s band).
TARGET_OVERHEAD_SHARE = 0.03

# Hold the current size while the target is within this relative band. Once converged under
# 10 % noise the simulated target moved by at most 3.2 % from its median; real overheads
# drift up to 1.7x within an hour (RUNTIME.md), which the sqrt in the model turns into
# ~1.3x. 25 % keeps sizes steady through that jitter, while a 20x drift (4.5x-20x in the
# target) passes at once. sim: 0.1 -> 1.038, 0.25 -> 1.036, 0.4 -> 1.037.
HOLD_BAND = 0.25

# Shrink only after this many consecutive decisions (each after a new observation) point
# below the band: AdaptiveCore's wait_count, so one odd estimate cannot cut the batch. A
# confirmed drift bypasses it. Flat in the sim (1 -> 1.037, 3 -> 1.036, 5 -> 1.036).
SHRINK_CONFIRM = 3

# Drift: a task whose per-item cost is beyond DRIFT_RATIO x (or 1/x) the estimate, the ratio
# widened by (1 + the recent tasks' coefficient of variation), is a signal; DRIFT_CONFIRM
# signals in a row reset the estimate to the newest task. 10 % noise never triggers it
# (0 alarms in 10 fine runs); heavy-tailed items trigger a few in the first ~10 tasks, while
# the estimate is still learning the distribution. With 2 in a row a 20x rise is acted on
# by the 1st-2nd decision after the first changed task is seen (3 in a row adds one);
# sim flat: ratio 1.5/2/3 -> 1.036/1.036/1.035, confirm 1/2/3 -> 1.036/1.036/1.036.
DRIFT_RATIO = 2.0
DRIFT_CONFIRM = 2

# Tasks whose per-item cost forms the estimate: at a converged size thousands of items.
# sim flat (4 -> 1.036, 8 -> 1.036, 16 -> 1.036); 8 refills soon after a drift reset.
COST_WINDOW_TASKS = 8

# Per-task overhead samples whose median is the estimate. Largest deviation of the estimate
# from its own median once converged (10 % noise): 8 -> 9.4 %, 16 -> 7.1 %, 32 -> 6.5 %,
# 64 -> 5.9 %; sim 8 -> 1.046, 32 -> 1.036, 128 -> 1.041 (slower to follow a changing flow).
OVERHEAD_SAMPLES = 32

# Completions the queue replay remembers, in windows (plus 16): a completion's submit lies
# about one window back, so 4 windows leave ample margin.
QUEUE_HISTORY_WINDOWS = 4

# Completions over which `throughput` (items/s, for the trace) is measured: at least
# THROUGHPUT_MIN_TASKS and THROUGHPUT_TASKS_PER_WORKER per thread, so the span's edge error
# (up to a task per thread) stays a small share. Reporting only; no decision uses it.
THROUGHPUT_MIN_TASKS = 16
THROUGHPUT_TASKS_PER_WORKER = 6

# Tail: keep at least this many batches per worker thread among the remaining items (the
# issue's "at least ~2·W batches remaining until the end"). sim: 1 -> 1.032, 2 -> 1.036,
# 3 -> 1.038; 1 leaves no queued task per thread to absorb a slow one, so 2.
TAIL_BATCHES_PER_WORKER = 2

# ... but no tail batch below this many overheads' worth of items (o/c items per overhead):
# halving a tail batch of x items saves ~x·c/2 of straggle and costs ~1.4·o (2·W more
# tasks per halving, o/W each), which stops paying below ~3·o/c. sim: 1 -> 1.056,
# 2 -> 1.035, 3 -> 1.036, 5 -> 1.035.
TAIL_FLOOR_OVERHEADS = 3.0

# Inline: the rest runs in the flow process when all of it costs less than this share of
# one task's overhead. At 1.0 it is exact for many threads and leaves a 2x margin for two
# (tasks finish the rest in at least o + R·c/W, inline in R·c): a wrong call costs at most
# about one overhead, tens of ms. Measured on 30 items of 2 ms (README's tiny workload):
# 0.5 kept a probe and a task (0.17 s, 1.5x the best static); 1.0 ends inline.
INLINE_SHARE = 1.0

# Fill: while the window holds the flow back (the probe, slow start) and a worker thread is
# idle, the flow runs items itself in slices of about FILL_SLICE_S, checking for completions
# between slices, instead of waiting idle. The slice bounds how late a completion is seen
# (the delay counts as overhead): 2 ms is under a tenth of the 28-34 ms a Prefect task costs
# here (lean profile). Items above FILL_MAX_ITEM_S are not filled after the first, which
# only teaches the cost: it starts after the probe and is shorter than it, so the probe is
# never seen late. Measured on 30 items of 2 ms (2 workers): the workload ends inline while
# the probe runs, 0.18 s -> see README's table.
FILL_SLICE_S = 0.002
FILL_MAX_ITEM_S = 0.010

# Tasks in flight before the first one finishes: one probe, nothing committed blind, and
# its duration has no queueing in it. sim: 1 -> 1.036, 2 -> 1.034, 4 -> 1.035,
# 16 -> 1.036 (the fine workloads pay for 16 blind single-item tasks: 1.025 vs 1.017).
COLD_START_WINDOW = 1

# After the probe the window opens by this many tasks per finished task (TCP-like slow
# start: it about doubles per round trip) up to the full window, so the flow does not spend
# 2·W dispatches on small batches before it can grow them. sim: 1 -> 1.036, 2 -> 1.045,
# fully open at once -> 1.042 (32 threads, 11 ms dispatch: 1.22 vs 1.31).
SLOW_START_PER_TASK = 1

# The full window: W running + W queued, so every thread has its next task waiting while
# the flow dispatches. sim: 1 -> 1.053, 2 -> 1.036, 3 -> 1.035. Bounded because Prefect
# keeps ~90 KB of bookkeeping per task call in the flow process (RUNTIME.md: 5,000 tasks
# -> 460 MB); 256 tasks ~ 25 MB.
WINDOW_PER_WORKER = 2
MIN_WINDOW = 2
MAX_WINDOW = 256

# The execution strategies a Decision names.
STRATEGIES = ("batched", "inline")


# --- data ---------------------------------------------------------------------------------


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
        max_batch_size: int | None = None,
    ) -> None:
        if total_items < 1:
            raise ValueError(f"total_items must be >= 1, got {total_items}")
        if worker_threads < 1:
            raise ValueError(f"worker_threads must be >= 1, got {worker_threads}")
        if initial_batch_size < 1:
            raise ValueError(f"initial_batch_size must be >= 1, got {initial_batch_size}")
        if prior_overhead_s is not None and not prior_overhead_s >= 0:
            raise ValueError(f"prior_overhead_s must be >= 0, got {prior_overhead_s}")
        if log_size < 1:
            raise ValueError(f"log_size must be >= 1, got {log_size}")
        if max_batch_size is not None and max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        # An upper bound on every batch from outside the policy (the mechanism's memory cap on
        # batch bytes, harness.strategies.base.ADAPTIVE_MAX_BATCH_BYTES); None: no bound.
        self.max_batch_size = max_batch_size
        self.total_items = total_items
        self.worker_threads = worker_threads
        self.window = min(MAX_WINDOW, max(MIN_WINDOW, WINDOW_PER_WORKER * worker_threads))  # once open
        # (time of the latest observation, decision), the newest `log_size` decisions
        self.log: collections.deque[tuple[float, Decision]] = collections.deque(maxlen=log_size)

        # steering
        self._size = initial_batch_size  # the model's batch size, before the tail and remaining caps
        self._fresh = False  # an observation arrived since the size last grew
        self._shrink_votes = 0
        self._shrink_seen = -1  # observation count at the last shrink vote
        self._now = 0.0  # finish time of the latest observation
        self._observed = 0  # observations, inline included
        self._tasks_seen = 0  # batched tasks observed

        # per-item cost
        self._costs: collections.deque[tuple[int, float]] = collections.deque(maxlen=COST_WINDOW_TASKS)
        self._streak: list[tuple[int, float]] = []
        self._streak_dir = 0
        self._drift: str | None = None  # set when a drift is confirmed, cleared by the next decision

        # per-task overhead
        self._queue = _QueueReplay(worker_threads, history=QUEUE_HISTORY_WINDOWS * self.window + 16)
        self._first_overhead: float | None = None  # min(duration - compute), until the replay has data
        self._prior_overhead = prior_overhead_s  # the runtime's, measured before; until a task finishes

        # throughput, for the trace: (finished, items) of the recent completions
        span = max(THROUGHPUT_MIN_TASKS, THROUGHPUT_TASKS_PER_WORKER * worker_threads)
        self._completions: collections.deque[tuple[float, int]] = collections.deque(maxlen=span + 1)

    # --- estimates (read-only, for the trace) ---

    @property
    def per_item_s(self) -> float | None:
        """Mean work per item (seconds), or None before any item was observed."""
        items = sum(n for n, _ in self._costs)
        return sum(c for _, c in self._costs) / items if items else None

    @property
    def overhead_s(self) -> float | None:
        """Effective per-task overhead (seconds), or None before any task finished.

        Submit-to-seen time minus compute minus queueing (replayed): the worker-side cost
        plus the time the busy flow took to notice the completion.
        """
        replayed = self._queue.overhead()
        if replayed is not None:
            return replayed
        return self._first_overhead if self._first_overhead is not None else self._prior_overhead

    @property
    def throughput(self) -> float | None:
        """Items completed per second over the recent completions, or None."""
        if len(self._completions) < 2:
            return None
        first, *rest = self._completions
        span = rest[-1][0] - first[0]
        return sum(n for _, n in rest) / span if span > 0 else None

    # --- the two calls the mechanism makes ---

    def observe(self, obs: BatchObservation) -> None:
        """Take in one finished task (or inline batch)."""
        if obs.items < 0 or obs.batch_size < 0 or obs.compute_s < 0 or obs.finished < obs.started:
            raise ValueError(f"inconsistent observation: {obs}")
        self._observed += 1
        self._now = max(self._now, obs.finished)
        if obs.items > 0:
            self._add_cost(obs.items, obs.compute_s)
        if obs.strategy == "inline":
            return  # no task, no worker: says nothing about task overhead
        self._tasks_seen += 1
        self._completions.append((obs.finished, obs.items))
        self._queue.finished(obs.started, obs.finished, obs.compute_s)
        raw = max(0.0, obs.duration_s - obs.compute_s)  # includes queueing: an upper bound
        self._first_overhead = raw if self._first_overhead is None else min(self._first_overhead, raw)
        self._fresh = True

    def decide(self, remaining: int, in_flight: int) -> Decision:
        """The next batch: `remaining` items are not yet submitted, `in_flight` tasks run."""
        if remaining < 1:
            raise ValueError(f"decide() needs remaining >= 1 (nothing left to submit), got {remaining}")
        if in_flight < 0:
            raise ValueError(f"in_flight must be >= 0, got {in_flight}")
        decision = self._capped(self._decide(remaining, in_flight))
        if decision.strategy == "batched":
            self._queue.submitted(in_flight)
        self.log.append((self._now, decision))
        return decision

    def fill(self, remaining: int, in_flight: int) -> Decision | None:
        """Items to run in the flow process while it would otherwise wait, or None.

        Asked when the window is full and nothing has finished. Only while a worker thread
        idles (in_flight < W: the probe and slow start), so it takes no thread's work.
        """
        if remaining < 1 or in_flight >= self.worker_threads:
            return None
        c, o = self.per_item_s, self.overhead_s
        if c is not None and o is not None and (inline := self._inline_rest(remaining, c, o)) is not None:
            inline = self._capped(inline)
            self.log.append((self._now, inline))
            return inline
        if c is None:
            size, why = 1, "learns the item cost while the probe runs"
        elif c > FILL_MAX_ITEM_S:
            return None
        else:
            size = max(1, _whole(math.floor, FILL_SLICE_S / c)) if c > 0 else remaining
            why = f"a {_ms(FILL_SLICE_S)} slice at c={_ms(c)}/item"
        size = min(size, remaining)
        # The window stays shut until the probe is seen. Opening it on the warm-up's overhead
        # and the filled items' cost (sim, 200 items of 1 ms, 50 ms overhead) ended the fill
        # and was slower: 0.220 s against 0.190 s.
        window = self._window() if self._tasks_seen else COLD_START_WINDOW
        decision = self._capped(Decision(size, "inline", f"fill: {in_flight} of {self.worker_threads} threads busy, "
                                         f"the window is full; the flow runs {size} itself ({why})", window))
        self.log.append((self._now, decision))
        return decision

    # --- internals ---

    def _capped(self, decision: Decision) -> Decision:
        """`decision` with its batch size held to `max_batch_size`, saying so."""
        if self.max_batch_size is None or decision.batch_size <= self.max_batch_size:
            return decision
        return dataclasses.replace(decision, batch_size=self.max_batch_size,
                                   reason=f"{decision.reason}; capped at {self.max_batch_size} (max batch size)")

    def _decide(self, remaining: int, in_flight: int) -> Decision:
        c, o = self.per_item_s, self.overhead_s
        if c is None or o is None or not self._tasks_seen:
            size = min(self._size, remaining)
            return Decision(
                size,
                "batched",
                f"cold start: one probe task of {size} before anything is known",
                COLD_START_WINDOW,
            )

        if in_flight < self.worker_threads and (inline := self._inline_rest(remaining, c, o)) is not None:
            return inline  # only with a thread idle: otherwise it would take a busy thread's core

        target, why = self._target(c, o)
        reason = self._steer(target, why, c, o)

        size = self._size
        tail_cap = math.ceil(remaining / (TAIL_BATCHES_PER_WORKER * self.worker_threads))
        if size > tail_cap:
            floor = _whole(math.ceil, TAIL_FLOOR_OVERHEADS * o / c) if c > 0 else 1
            size = max(tail_cap, min(size, floor))
            reason = f"tail: {remaining} left, ~{TAIL_BATCHES_PER_WORKER} batches per worker; {reason}"
        size = max(1, min(size, remaining))
        return self._batched(size, reason)

    def _inline_rest(self, remaining: int, c: float, o: float) -> Decision | None:
        if remaining * c >= INLINE_SHARE * o:
            return None
        source = "" if self._tasks_seen else " (measured at warm-up)"
        return Decision(
            remaining,
            "inline",
            f"inline: remaining work {_ms(remaining * c)} < {INLINE_SHARE:.0%} "
            f"of one task's overhead {_ms(o)}{source}",
            self._window(),
        )

    def _target(self, c: float, o: float) -> tuple[float, str]:
        """The model's batch size and a few words on which limit set it."""
        if c <= 0:
            return math.inf, "items cost nothing measurable"
        makespan_b = math.sqrt(self.total_items * o / (self.worker_threads * c))
        # Rounded down: no more items than it takes to bring the overhead down to the share.
        share_b = max(1, _whole(math.floor, o * (1 - TARGET_OVERHEAD_SHARE) / (TARGET_OVERHEAD_SHARE * c)))
        if share_b <= makespan_b:
            return share_b, f"overhead {TARGET_OVERHEAD_SHARE:.0%} of task at {share_b}"
        return makespan_b, f"makespan optimum sqrt(N·o/(W·c)) = {_round(makespan_b)}"

    def _steer(self, target: float, why: str, c: float, o: float) -> str:
        """Move `self._size` toward `target` with the growth cap, hysteresis and confirmation."""
        size = self._size
        share = o / (o + size * c) if o + size * c > 0 else 0.0
        estimates = f"c={_ms(c)}/item, o={_ms(o)}/task, overhead {share:.0%} of task"
        drift, self._drift = self._drift, None
        if drift is not None and target < size:
            self._size = max(1, _round(target))
            self._shrink_votes = 0
            return f"shrink to {self._size}: {drift}; {why}; {estimates}"
        if target > size * (1 + HOLD_BAND) and _round(target) > size:
            self._shrink_votes = 0
            # A batch whose work is at most one overhead lasts at most ~2 overheads, whatever
            # the estimates' errors: up to that size it may jump in one step.
            dominated = _whole(math.floor, o / c) if c > 0 else _HUGE
            new = min(_round(target), max(_round(size * GROWTH_MAX), dominated))
            # Without a new observation, grow only while the task stays overhead-dominated:
            # its predicted duration is then at most ~2x what was already seen.
            if not self._fresh and new * c > o:
                return f"hold {size}: growth waits for a new observation; {estimates}"
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

    def _batched(self, size: int, reason: str) -> Decision:
        return Decision(size, "batched", reason, self._window())

    def _window(self) -> int:
        """Slow start: the window opens by SLOW_START_PER_TASK per finished task, up to full."""
        return min(self.window, max(MIN_WINDOW, SLOW_START_PER_TASK * self._tasks_seen))

    def _add_cost(self, items: int, compute: float) -> None:
        """Fold one observation into the per-item cost estimate, watching for drift."""
        estimate = self.per_item_s
        per_item = compute / items
        direction = 0
        if estimate is not None and estimate > 0:
            # The ratio widens with the spread the recent tasks already show (heavy-tailed
            # items in small batches), so their ordinary scatter is not taken for drift.
            seen = [c / n for n, c in self._costs]
            mean = sum(seen) / len(seen)
            ratio = DRIFT_RATIO * (1 + (statistics.pstdev(seen) / mean if mean > 0 else 0.0))
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
    """Per-task overhead with the queueing taken out, by replaying the window as a queue.

    The controller sees the exact order of its own calls: each `decide` is one submit and
    carries `in_flight`, the tasks already in the system when that task arrived; each
    `observe` is one completion, in the order the flow saw them. W threads take tasks first
    come, first served, so a task that arrived behind `ahead` >= W others starts when the
    (ahead - W + 1)-th completion after its submit is seen; with `ahead` < W a thread was
    free and it starts at once. Its overhead is then finished - start - compute.

    A completion is matched to its submit through the flow clock: it was submitted after
    the m completions seen before its `started` time, and among the submits made between
    completion m and m+1 (usually exactly one) its rank is that of its `started` time.
    """

    def __init__(self, threads: int, history: int) -> None:
        self.threads = threads
        self.history = history
        self.fins: list[float] = []  # seen-complete times, sorted; global index = offset + i
        self.offset = 0
        self.starts: list[float] = []  # submit times of seen tasks, sorted (recent history)
        self.groups: dict[int, list[int]] = {}  # m -> [in_flight at the first submit after m seen, submits]
        self.samples: collections.deque[float] = collections.deque(maxlen=OVERHEAD_SAMPLES)

    def overhead(self) -> float | None:
        return statistics.median(self.samples) if self.samples else None

    def submitted(self, in_flight: int) -> None:
        """One submit, `in_flight` tasks already in the system."""
        m = self.offset + len(self.fins)
        group = self.groups.get(m)
        if group is None:
            self.groups[m] = [in_flight, 1]
        else:
            group[1] += 1

    def finished(self, started: float, finished: float, compute: float) -> None:
        self._replay(started, finished, compute)
        bisect.insort(self.starts, started)
        bisect.insort(self.fins, finished)
        if len(self.fins) > self.history:
            del self.fins[0]
            self.offset += 1
            for m in [m for m in self.groups if m < self.offset - 1]:
                del self.groups[m]
        if len(self.starts) > self.history:
            del self.starts[0]

    def _replay(self, started: float, finished: float, compute: float) -> None:
        if self.offset and started < self.fins[0]:
            return  # submitted before the remembered history: its place in the queue is lost
        seen_before = bisect.bisect_right(self.fins, started)
        m = self.offset + seen_before
        group = self.groups.get(m)
        if group is None:
            return  # no submit on record there: the mechanism broke the contract; skip
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
            self.samples.append(finished - begin - compute)


_HUGE = 1 << 62  # "unbounded" as an int: every size is capped by `remaining` in the end


def _whole(to_int: Callable[[float], int], x: float) -> int:
    """`to_int(x)` (math.floor or math.ceil), with inf and overflow mapped to _HUGE."""
    return _HUGE if x >= _HUGE else to_int(x)


def _round(x: float) -> int:
    """Nearest integer >= 1 (inf -> _HUGE)."""
    return max(1, _whole(math.floor, x + 0.5))


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3g} ms"
