"""A deterministic discrete-event simulator of the adaptive mechanism, for the controller.

No wall clock, no threads: a seeded numpy generator draws every cost up front (the same
draws for every policy), and the loop below plays the mechanism the way the adaptive
strategy is specified to drive a `Controller`:

- one flow process, serial: each submit costs it `dispatch_s` of its own time; while items
  remain and fewer than `decision.window` tasks are in flight it asks `decide()` and
  submits; an "inline" decision runs the batch in the flow process itself; when the window
  is full and nothing has finished, items the policy's `fill()` hands it run there too;
- W single-thread workers behind a scheduler queue; a task costs `overhead_s`, plus
  `transfer_s` per item (moving and (de)serialising items and results: part of the task's
  duration, not of its measured compute), plus the costs of its items. `worker_slots=1` is one global FIFO queue; `worker_slots=2` is Dask's
  default for 1-thread workers (a running task plus one queued on that worker);
- the flow notices completions only between submits; it observes every task in completion
  order, with `finished` = the flow time it noticed it.

The controller follows the mechanism contract: after `decide()` the loop calls
`submitted(decision)` (a task or an inline run), as `run_adaptive` does. Its prior is what
the warm-up would measure (`prior_overhead`): one item's overhead and transfer, or the
serial dispatch of W tasks when the flow cannot keep W threads busy.

`simulate(workload, policy)` returns the makespan, the task count, every decision (with the
index of its first item) and every observation. `best_static(workload)` is the oracle: the
best fixed batch size of a sweep (the `static:N` strategy, window 2·W) in the same world.
`python tests/controller_sweep.py` prints the adaptive/oracle table of every workload the
constants were tuned on and of a held-out set.

Import it with this folder on `sys.path` (pytest does that for tests/).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from harness.policy.controller import FILL_MAX_ITEM_S, BatchObservation, Controller, Decision
from harness.workload.spec import DISTRIBUTIONS

SWEEP = (1, 4, 16, 64, 256, 1024, 4096, 16384)

# `gil_stall` of CPU-bound items: the probe's round trip measured at warm-up on
# workloads/bench/tiny.toml, 24 ms into a waiting flow and ~70 ms into a filling one:
# L_fill = L_wait / (1 - s) gives s ~ 0.65. Sleep items release the GIL: 0.
CPU_GIL_STALL = 0.65

MeanCost = Callable[[np.ndarray], np.ndarray]  # item indices -> mean cost (s) of each item


class Policy(Protocol):
    def decide(self, remaining: int, in_flight: int) -> Decision: ...
    def observe(self, obs: BatchObservation) -> None: ...
    def submitted(self, decision: Decision) -> None: ...


def constant_cost(mean_s: float) -> MeanCost:
    return lambda idx: np.full(idx.shape, mean_s, dtype=float)


def phased_cost(mean_s: float, phases: Sequence[tuple[float, float]], items: int) -> MeanCost:
    """Mean `mean_s`, then from fraction `at` of the items on, `mean` (phases = [(at, mean)])."""

    def cost(idx: np.ndarray) -> np.ndarray:
        out = np.full(idx.shape, mean_s, dtype=float)
        for at, mean in phases:
            out[idx >= int(at * items)] = mean
        return out

    return cost


@dataclass(frozen=True)
class SimWorkload:
    """What the simulator runs: items, their costs, and the platform's costs."""

    name: str
    items: int
    workers: int
    mean_cost: MeanCost  # c(i): mean cost of item i, seconds (drift lives here)
    overhead_s: float = 0.020  # per task, on the worker (Prefect task on Dask)
    dispatch_s: float = 0.0  # per task, serial in the flow process
    distribution: str = "constant"  # shape around c(i), as in the workload files
    spread: float = 1.0  # uniform half-width / lognormal sigma / pareto alpha
    heavy_fraction: float = 0.05  # bimodal: share of heavy items
    heavy_s: float = 0.050  # bimodal: cost of a heavy item
    noise: float = 0.0  # multiplicative noise (lognormal sigma, mean one) on items, overhead, dispatch
    seed: int = 0
    transfer_s: float = 0.0  # per item, on the worker's clock but outside the measured compute
    # Share of the flow's own item work that stalls the tasks in flight: CPU-bound items run in
    # a flow process that also hosts the scheduler hold its GIL (harness.strategies.probe).
    gil_stall: float = 0.0

    @property
    def prior_overhead(self) -> float:
        """What the warm-up (per-item tasks, window 2·W) would measure as overhead per task."""
        return max(self.overhead_s + self.transfer_s, self.workers * self.dispatch_s)

    @property
    def prior_probe(self) -> float:
        """What the warm-up would measure as the probe's round trip into a waiting flow."""
        return self.dispatch_s + self.overhead_s + self.transfer_s

    @property
    def prior_probe_filling(self) -> float:
        """... and into a flow that fills meanwhile: the fill stalls it by `gil_stall` of its
        own duration, so L = base + gil_stall·L (items too big to fill leave it as it is)."""
        fills = float(self.mean_cost(np.arange(1))[0]) <= FILL_MAX_ITEM_S and self.workers > 1
        return self.prior_probe / (1 - self.gil_stall) if fills else self.prior_probe


@dataclass(frozen=True)
class Draws:
    """Everything random about one workload, drawn once so that every policy meets the same world."""

    prefix: np.ndarray  # prefix[i] = sum of the costs of items < i
    overhead: np.ndarray  # overhead of the k-th task submitted
    dispatch: np.ndarray  # flow-side cost of the k-th submit

    def work(self, start: int, stop: int) -> float:
        return float(self.prefix[stop] - self.prefix[start])


def draw(w: SimWorkload) -> Draws:
    if w.distribution not in DISTRIBUTIONS:
        raise ValueError(f"unknown distribution {w.distribution!r}")
    if w.distribution == "uniform" and not 0 <= w.spread <= 1:
        raise ValueError(f"uniform spread must be in [0, 1] (costs >= 0), got {w.spread}")
    if w.distribution == "pareto" and w.spread <= 1:
        raise ValueError(f"pareto alpha (spread) must be > 1 for a finite mean, got {w.spread}")
    rng_items, rng_noise, rng_over, rng_disp = (
        np.random.default_rng(s) for s in np.random.SeedSequence(w.seed).spawn(4)
    )
    n = w.items
    mean = w.mean_cost(np.arange(n))
    if w.distribution == "constant":
        costs = mean
    elif w.distribution == "uniform":
        costs = mean * rng_items.uniform(1 - w.spread, 1 + w.spread, n)
    elif w.distribution == "lognormal":
        costs = mean * rng_items.lognormal(-w.spread**2 / 2, w.spread, n)
    elif w.distribution == "pareto":  # mean-one pareto with alpha = spread
        alpha = w.spread
        costs = mean * (rng_items.pareto(alpha, n) + 1) * (alpha - 1) / alpha
    else:  # bimodal: light items cost c(i), a share heavy_fraction costs heavy_s
        costs = np.where(rng_items.random(n) < w.heavy_fraction, w.heavy_s, mean)
    costs = costs * _noise(rng_noise, w.noise, n)
    prefix = np.concatenate(([0.0], np.cumsum(costs)))
    overhead = w.overhead_s * _noise(rng_over, w.noise, n)
    dispatch = w.dispatch_s * _noise(rng_disp, w.noise, n)
    return Draws(prefix, overhead, dispatch)


def _noise(rng: np.random.Generator, sigma: float, n: int) -> np.ndarray:
    if sigma <= 0:
        return np.ones(n)
    return rng.lognormal(-sigma**2 / 2, sigma, n)


@dataclass(frozen=True)
class Submitted:
    """One decision as the mechanism applied it."""

    first_item: int  # index of the first item of the batch
    decision: Decision
    submitted: float  # flow time of the submit


@dataclass(frozen=True)
class SimResult:
    makespan_s: float
    tasks: int  # tasks submitted (inline batches not counted)
    decisions: tuple[Submitted, ...]
    observations: tuple[BatchObservation, ...]
    ideal_s: float  # total item work / worker threads

    @property
    def sizes(self) -> list[int]:
        return [s.decision.batch_size for s in self.decisions]


class StaticPolicy:
    """A fixed batch size, window 2·W: the `static:N` strategy."""

    def __init__(self, batch_size: int, workers: int) -> None:
        self.batch_size = batch_size
        self.window = 2 * workers

    def decide(self, remaining: int, in_flight: int) -> Decision:
        return Decision(min(self.batch_size, remaining), "batched", f"static:{self.batch_size}", self.window)

    def observe(self, obs: BatchObservation) -> None:
        pass

    def submitted(self, decision: Decision) -> None:
        pass


class _Cluster:
    """W single-thread workers behind a scheduler queue, advanced event by event.

    The scheduler hands a ready task to a worker with a free slot (the least busy one),
    else keeps it in its FIFO queue until a slot frees. With one slot per worker this is
    one global FIFO queue; with two it is Dask's default (worker-saturation 1.1 gives a
    1-thread worker a running task plus one queued locally, which waits for that worker).
    """

    def __init__(self, workers: int, slots: int) -> None:
        self.slots = slots
        self.busy_until = [0.0] * workers
        self.assigned = [0] * workers
        self.queue: list[tuple[int, float]] = []  # (task, service time) waiting for a slot
        self.queue_head = 0
        self.events: list[tuple[float, int, int]] = []  # (finish, task, worker)
        self.finished: list[int] = []  # tasks in the order they ended

    def ready(self, t: float, task: int, service: float) -> None:
        """Task `task` reaches the scheduler at time `t`."""
        self.advance(t)
        free = [w for w, n in enumerate(self.assigned) if n < self.slots]
        if free and self.queue_head == len(self.queue):
            self._assign(min(free, key=lambda w: (self.busy_until[w], w)), t, task, service)
        else:
            self.queue.append((task, service))

    def _assign(self, w: int, t: float, task: int, service: float) -> None:
        finish = max(t, self.busy_until[w]) + service
        self.busy_until[w] = finish
        self.assigned[w] += 1
        heapq.heappush(self.events, (finish, task, w))

    def stall(self, delay: float) -> None:
        """Everything running or waiting is held back by `delay` (the flow holds the GIL the
        scheduler needs); call after `advance(now)`, so what already ended is not moved."""
        if delay <= 0 or not self.events:
            return
        self.events = [(finish + delay, task, w) for finish, task, w in self.events]  # order kept: still a heap
        running = {w for _, _, w in self.events}
        self.busy_until = [b + delay if w in running else b for w, b in enumerate(self.busy_until)]

    def next_finish(self) -> float | None:
        return self.events[0][0] if self.events else None

    def advance(self, t: float) -> list[int]:
        """Process every task end up to time `t`; return the tasks that ended, in order."""
        done = []
        while self.events and self.events[0][0] <= t:
            finish, task, w = heapq.heappop(self.events)
            self.assigned[w] -= 1
            done.append(task)
            if self.queue_head < len(self.queue):
                nxt, service = self.queue[self.queue_head]
                self.queue_head += 1
                self._assign(w, finish, nxt, service)
        self.finished.extend(done)
        return done


def simulate(
    w: SimWorkload, policy: Policy | None = None, draws: Draws | None = None, *, worker_slots: int = 1
) -> SimResult:
    """Run `w` under `policy` (default: a fresh `Controller`) and return what happened.

    `worker_slots`: tasks a worker holds at once (1: one global FIFO queue; 2: Dask's
    default on 1-thread workers, a running task plus one queued on that worker).
    """
    d = draws if draws is not None else draw(w)
    if policy is None:
        policy = Controller(w.items, w.workers, prior_overhead_s=w.prior_overhead, prior_item_s=warm_up_item_cost(w, d),
                            prior_probe_s=w.prior_probe, prior_probe_filling_s=w.prior_probe_filling)
    n = w.items
    cluster = _Cluster(w.workers, worker_slots)
    t = 0.0  # the flow process's clock
    tasks_info: list[tuple[int, float, float]] = []  # per task: (size, submitted, work)
    seen = 0  # tasks in cluster.finished the flow has observed
    next_item = in_flight = 0
    window = 1
    decisions: list[Submitted] = []
    observations: list[BatchObservation] = []

    while next_item < n or in_flight:
        while next_item < n and in_flight < window:
            remaining = n - next_item
            dec = policy.decide(remaining, in_flight)
            if not (1 <= dec.batch_size <= remaining):
                raise AssertionError(f"batch_size {dec.batch_size} outside [1, {remaining}]: {dec}")
            if dec.strategy not in ("batched", "inline") or dec.window < 1 or not dec.reason:
                raise AssertionError(f"malformed decision {dec}")
            window = dec.window
            b = dec.batch_size
            work = d.work(next_item, next_item + b)
            decisions.append(Submitted(next_item, dec, t))
            submitted = getattr(policy, "submitted", None)
            if submitted is not None:
                submitted(dec)
            if dec.strategy == "inline":
                cluster.advance(t)
                cluster.stall(w.gil_stall * work)
                started, t = t, t + work
                obs = BatchObservation(b, b, started, t, work, b, 0, "inline")
                observations.append(obs)
                policy.observe(obs)
            else:
                k = len(tasks_info)
                tasks_info.append((b, t, work))
                t += d.dispatch[k]
                cluster.ready(t, k, d.overhead[k] + b * w.transfer_s + work)
                in_flight += 1
            next_item += b
        if not in_flight:
            continue
        cluster.advance(t)
        if seen == len(cluster.finished):  # nothing new ended while the flow was busy
            fill = getattr(policy, "fill", None)
            dec = fill(n - next_item, in_flight) if fill is not None and next_item < n else None
            if dec is not None:  # the flow works a slice itself, then looks again
                b = dec.batch_size
                if not (1 <= b <= n - next_item) or dec.strategy != "inline":
                    raise AssertionError(f"malformed fill {dec}")
                work = d.work(next_item, next_item + b)
                decisions.append(Submitted(next_item, dec, t))
                window = dec.window
                cluster.stall(w.gil_stall * work)
                started, t = t, t + work
                obs = BatchObservation(b, b, started, t, work, b, 0, "inline")
                observations.append(obs)
                policy.observe(obs)
                next_item += b
                continue
            t = max(t, cluster.next_finish())  # nothing to do: wait
            cluster.advance(t)
        for k in cluster.finished[seen:]:
            b, started, work = tasks_info[k]
            in_flight -= 1
            obs = BatchObservation(b, b, started, t, work, b, 0)
            observations.append(obs)
            policy.observe(obs)
        seen = len(cluster.finished)

    ideal = d.work(0, n) / w.workers
    return SimResult(t, len(tasks_info), tuple(decisions), tuple(observations), ideal)


def warm_up_item_cost(w: SimWorkload, d: Draws) -> float:
    """What the warm-up would measure as c: the mean cost of 2·W items spread over the run."""
    m = min(w.items, 2 * w.workers)
    idx = (np.arange(m) * w.items) // m + w.items // (2 * m)
    return float(np.mean(d.prefix[idx + 1] - d.prefix[idx]))


@dataclass(frozen=True)
class Oracle:
    batch_size: int
    makespan_s: float
    makespans: dict[int, float | None] = field(default_factory=dict)  # None: pruned by a lower bound


def best_static(
    w: SimWorkload, sweep: Iterable[int] = SWEEP, draws: Draws | None = None, *, worker_slots: int = 1
) -> Oracle:
    """The best `static:N` of `sweep` in hindsight, in the same simulated world as `simulate`.

    Sizes are tried in order of a lower bound on their makespan (all work and every task's
    overhead spread perfectly over W threads; every submit paid serially by the flow) and
    skipped once that bound exceeds the best makespan found: an exact minimum, without
    simulating 200,000 per-item tasks.
    """
    d = draws if draws is not None else draw(w)
    total = d.work(0, w.items)
    over = np.concatenate(([0.0], np.cumsum(d.overhead)))
    disp = np.concatenate(([0.0], np.cumsum(d.dispatch)))

    def lower_bound(b: int) -> float:
        k = math.ceil(w.items / b)
        return max((total + over[k] + w.items * w.transfer_s) / w.workers, disp[k])

    makespans: dict[int, float | None] = {b: None for b in sweep}
    best_b, best = 0, math.inf
    for b in sorted(makespans, key=lower_bound):
        if lower_bound(b) >= best:
            break
        m = simulate(w, StaticPolicy(b, w.workers), d, worker_slots=worker_slots).makespan_s
        makespans[b] = m
        if m < best:
            best_b, best = b, m
    return Oracle(best_b, best, makespans)


def standard_workloads(cpu: float = CPU_GIL_STALL) -> list[SimWorkload]:
    """The workloads the controller is judged on (tests and benchmarks); `cpu`: the CPU-bound
    ones' `gil_stall` (w8_dispatch stands for sleeping threads)."""
    n = 200_000
    c = 0.0002
    o = 0.020
    return [
        SimWorkload("fine_uniform", n, 2, constant_cost(c), o, 0.002, "uniform", 0.5, noise=0.1, seed=1, gil_stall=cpu),
        SimWorkload("lognormal", n, 2, constant_cost(c), o, 0.002, "lognormal", 1.0, noise=0.1, seed=2, gil_stall=cpu),
        SimWorkload("pareto", n, 2, constant_cost(c), o, 0.002, "pareto", 1.5, noise=0.1, seed=3, gil_stall=cpu),
        SimWorkload("bimodal", 50_000, 2, constant_cost(c), o, 0.002, "bimodal", noise=0.1, seed=4, gil_stall=cpu),
        SimWorkload(
            "drift",
            n,
            2,
            phased_cost(c, [(0.4, 20 * c), (0.7, c)], n),
            o,
            0.002,
            "uniform",
            0.5,
            noise=0.1,
            seed=5,
            gil_stall=cpu,
        ),
        SimWorkload("coarse", 400, 2, constant_cost(0.5), o, 0.002, "uniform", 0.5, noise=0.1, seed=6, gil_stall=cpu),
        SimWorkload("w8_dispatch", n, 8, constant_cost(c), o, 0.011, "uniform", 0.5, noise=0.1, seed=7),
    ]


def oracle_sweep(w: SimWorkload) -> list[int]:
    """SWEEP plus the sizes that split the items into 1-4 whole waves over the W threads."""
    waves = {math.ceil(w.items / (k * w.workers)) for k in (1, 2, 3, 4)}
    return sorted(set(SWEEP) | waves)


def ratio_to_best_static(w: SimWorkload, *, worker_slots: int = 1) -> tuple[float, SimResult, Oracle]:
    """Adaptive makespan / best static makespan over `oracle_sweep(w)`, in one simulated world."""
    d = draw(w)
    adaptive = simulate(w, draws=d, worker_slots=worker_slots)
    oracle = best_static(w, oracle_sweep(w), d, worker_slots=worker_slots)
    return adaptive.makespan_s / oracle.makespan_s, adaptive, oracle
