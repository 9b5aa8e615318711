"""One workload run: start the runtime, warm it up, run every strategy x repeat interleaved,
check that every item is accounted for, and write the run folder.

`repeats = "auto"` adds rounds until harness.analysis.settle says adaptive's ratios have settled or the
next round would overrun `budget_s` (counted over the measured rounds, from the first one's
start; start-up and warm-up are outside it, and the first round always runs).

It measures and records (runs.csv, trace.csv, env.json, results.json) and nothing else: the report, its plots
and the Prefect artifacts read the committed folder (harness.cli calls them), so a failure
there never costs the measurements."""

from __future__ import annotations

import dataclasses
import math
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from harness.analysis import overhead, settle
from harness.measure.machine_load import LoadProbe, load_now
from harness.measure.workload_digest import workload_digest
from harness.errors import RunError
from harness.patterns import pattern_variants, run_pattern
from harness.patterns.flat_map import mapped_stage
from harness.patterns.labels import RunLabel
from harness.patterns.stages import call_flow
from harness.patterns.trace import mode_changes
from harness.measure.environment import environment
from harness.measure.memory import RssSampler
from harness.measure.records import TASKS_COLUMNS, TRACE_COLUMNS, RunRecord, records_frame
from harness.measure.run_folder import fresh_run_id, remove_stale_partials, run_folder, write_json, written
from harness.measure.results_file import write_results
from harness.policy.learned import Learned
from harness.runtime import LEAN, STOCK, Runtime, learned_store, open_runtime
from harness.runtime.client_env import without_flow_heartbeat
from harness.runtime.diagnostics import DaskSeen, watch_stage
from harness.runtime.api_calls import ApiCalls, count_everywhere, count_stage
from harness.workload.spec import AUTO, WorkloadSpec, strategies_to_run
from harness.strategies import Stage, StageResult
from harness.workload.vocabulary import ADAPTIVE, ADAPTIVE_KINDS, ADAPTIVE_WARM, DASK_TASK_BUDGET, PREFECT_TASK_BUDGET, Strategy
from harness.strategies.probe import probe_latencies
from harness.work.user_task import UserTask, load_task
from harness.measure.worker_watch import WorkerWatch, current_workers
from harness.work.kernels import Kernel
from harness.work.outcomes import FAILED_AFTER_RETRIES, Tally
from harness.work.synthetic import Workload

# Warm-up tasks per worker thread: enough that every worker has imported Prefect, calibrated
# its CPU kernel and opened its API clients before anything is timed.
WARM_UP_TASKS_PER_THREAD = 2

# Probes of each kind (harness.strategies.probe), all in one flow run: the median of three
# shrugs off one descheduled round trip; the six cost ~0.3 s.
PROBE_ROUNDS = 3
# Items the probing flow fills with (over again when they run out): a spread of the workload.
PROBE_FILL_ITEMS = 1024

EventSink = Callable[[str], None]
# progress(stage label, items) -> the stage's on_progress callback (see harness.report.progress)
ProgressSink = Callable[[str, int], Callable[[int], None]]
# committed(run folder): called once the folder is in place, while the runtime is still up (the
# Prefect artifacts need its API server); what it raises propagates, the folder stays.
CommittedSink = Callable[[Path], None]
# on_stage(start-up stage name): called as each start-up stage begins (server, cluster, worker
# check, warm-up), for the progress line.
StartupSink = Callable[[str], None]


def weighted_median(sizes: Counter[int]) -> float:
    """The median batch size over tasks, from a {size: task count} tally (the lower median)."""
    total, seen = sum(sizes.values()), 0
    for size in sorted(sizes):
        seen += sizes[size]
        if seen * 2 >= total:
            return float(size)
    return math.nan


def rotated(strategies: tuple[Strategy, ...], repeat: int) -> list[Strategy]:
    """Each repeat starts one strategy later, so slow drift of the machine favours none; but
    `adaptive_warm` runs after `adaptive`, whose stage in the same repeat it starts from."""
    k = repeat % len(strategies)
    order = list(strategies[k:] + strategies[:k])
    cold, warm = Strategy(ADAPTIVE.name), Strategy(ADAPTIVE_WARM.name)
    if cold in order and warm in order and order.index(warm) < order.index(cold):
        order.remove(warm)
        order.insert(order.index(cold) + 1, warm)
    return order


def task_frame(result: StageResult, strategy: Strategy, repeat: int, variant: str, threads: int) -> pd.DataFrame:
    """The stage's tasks as tasks.csv rows (all of them; thinned when written), starts replayed."""
    rows = result.timings.records() if result.timings is not None else []
    if not rows:
        return pd.DataFrame(columns=list(TASKS_COLUMNS))
    tasks = overhead.with_starts(pd.DataFrame(rows), threads)
    return tasks.assign(strategy=str(strategy), repeat=repeat, variant=variant,
                        runtime=overhead.runtime_of(strategy.needs_flow))[list(TASKS_COLUMNS)]


def with_overhead_split(records: list[RunRecord], tasks: pd.DataFrame) -> list[RunRecord]:
    """Each record with its fixed cost per task and its runtime's per-item transfer cost, from
    one fit per runtime over every strategy's tasks (different batch sizes tell o from t)."""
    costs = {name: overhead.fit(rows, name) for name, rows in tasks.groupby("runtime")} if len(tasks) else {}
    out = []
    for r in records:
        mine = tasks[(tasks["strategy"] == r.strategy) & (tasks["repeat"] == r.repeat) & (tasks["variant"] == r.variant)] \
            if len(tasks) else tasks
        cost = costs.get(mine["runtime"].iloc[0]) if len(mine) else None
        if cost is None:
            out.append(r)
            continue
        out.append(dataclasses.replace(
            r, fixed_ms_per_task=round(overhead.fixed_per_task(mine, cost) * 1000, 3),
            transfer_us_per_item=round(cost.transfer_s * 1e6, 3) if cost.identified else math.nan))
    return out


def _record(spec: WorkloadSpec, strategy: Strategy, repeat: int, order: int, result: StageResult,
            runtime: Runtime, items_total: int, rss: RssSampler, flow_s: float,
            variant: str = "dynamic", tasks: pd.DataFrame | None = None) -> RunRecord:
    tally = result.tally
    threads = runtime.worker_threads
    items = tally.items
    sampled = items < items_total
    wall = result.wall_s
    idle_s, tail_idle_s = overhead.idle(tasks, wall, threads) if tasks is not None else (math.nan, math.nan)
    return RunRecord(
        workload=spec.name,
        strategy=str(strategy),
        repeat=repeat,
        wall_s=round(wall, 6),
        items=items,
        items_ok=tally.items_ok,
        items_failed=tally.items_failed,
        tasks=result.tasks,
        retries=tally.retries,
        batch_size_median=weighted_median(result.batch_sizes),
        ideal_s=round(tally.compute_s / threads, 6),
        peak_rss_mb=round(rss.peak_mb, 1),
        items_total=items_total,
        sampled=sampled,
        projected_wall_s=round(wall * items_total / items, 6) if items else math.nan,
        compute_s=round(tally.compute_s, 6),
        throughput_items_s=round(items / wall, 3) if wall > 0 else math.nan,
        overhead_per_task_ms=round((wall * threads - tally.compute_s) / result.tasks * 1000, 3)
        if result.tasks else math.nan,
        flow_s=round(flow_s, 6),
        checksum=f"{tally.checksum:016x}",
        order=order,
        profile=runtime.profile,
        rss_growth_mb=round(rss.growth_mb, 1),
        pattern=spec.pattern.kind,
        variant=variant,
        flow_runs=result.flow_runs,
        routes=result.routes,
        mode_changes=len(mode_changes(result.trace)),
        idle_s=round(idle_s, 6),
        tail_idle_s=round(tail_idle_s, 6),
        peak_rss_above_start_mb=round(rss.own_growth_mb, 1),
    )


def with_dask_seen(record: RunRecord, seen: DaskSeen | None) -> RunRecord:
    """`record` with what the scheduler's task stream saw of its stage (runs.csv's dask_* columns)."""
    if seen is None:
        return record
    return dataclasses.replace(record, dask_tasks=seen.tasks, dask_compute_s=round(seen.compute_s, 6),
                               dask_transfer_s=round(seen.transfer_s, 6),
                               dask_deserialize_s=round(seen.deserialize_s, 6))


def api_columns(seen: ApiCalls | None) -> dict[str, float]:
    """runs.csv's prefect_* columns from what a stage sent the API (harness.runtime.api_calls);
    NaN when a process could not say."""
    if seen is None:
        return {}
    return {"prefect_task_runs": seen.task_runs, "prefect_state_changes": seen.state_changes,
            "prefect_api_requests": seen.requests}


def dask_report_file(strategy: Strategy, variant: str) -> str:
    """The performance report's file name in the run folder: dask-report-static-64.html (no ':',
    which some file systems refuse), the variant added when it is not the pattern as written."""
    return f"dask-report-{str(strategy).replace(':', '-')}{'' if variant == 'dynamic' else '-' + variant}.html"


def which_repeats(note: str, repeats: list[int], of: int) -> str:
    """A strategy's note with the repeats it was made in, numbered from 1 as the progress line
    does ("... (repeats 1, 3)"); a note every repeat made, or none in particular, stays as it is."""
    seen = sorted(set(repeats))
    if not seen or len(seen) == of:  # no repeats: a note about the whole run
        return note
    return f"{note} (repeat{'s' if len(seen) > 1 else ''} {', '.join(str(r + 1) for r in seen)})"


def check_accounting(records: list[RunRecord], strict: bool = True) -> list[str]:
    """Every item counted once, and the same items give the same results under every strategy.

    Different results are an error when `strict` (the synthetic kernels are deterministic, so
    it is a bug); otherwise (a user's function, which may not be deterministic) they are
    returned as notes for the report."""
    notes = []
    for r in records:
        if r.items_ok + r.items_failed != r.items:
            raise RunError(f"{r.strategy} repeat {r.repeat}: {r.items_ok} ok + {r.items_failed} failed != {r.items} items")
    by_items: dict[int, set[tuple[str, str]]] = {}
    for r in records:
        label = r.strategy if r.variant == "dynamic" else f"{r.strategy} ({r.variant})"
        by_items.setdefault(r.items, set()).add((r.checksum, label))
    for items, seen in by_items.items():
        if len({c for c, _ in seen}) > 1:
            detail = ", ".join(sorted(f"{s}={c}" for c, s in seen))
            if strict:
                raise RunError(f"results differ between strategies on the same {items} items: {detail}")
            notes.append(f"results differ between runs on the same {items} items, so the function is not "
                         f"deterministic (or its results do not pickle the same way twice); checksums: {detail}")
    return notes


def failure_note(tally: Tally) -> str:
    """What the report says about a run's failed items: how many, and the first few exceptions
    (or, when none said why, how many of each exception class)."""
    first = "; ".join(f"item {index}: {text}" for index, text in tally.failure_examples)
    classes = ", ".join(f"{n:,} {error}" for error, n in tally.errors.items())
    return (f"{tally.items_failed:,} {FAILED_AFTER_RETRIES}"
            + (f" (first: {first})" if first else f" ({classes})" if classes else ""))


@dataclasses.dataclass(frozen=True)
class WarmUp:
    """What the warm-up measured of the Prefect path: the adaptive controller's priors."""

    overhead_s: float | None  # per task with every thread busy: (wall x threads - compute) / tasks
    item_s: float | None  # mean compute per item of those tasks
    probe_s: float | None  # one task's round trip (submit to seen, minus compute), the flow waiting
    probe_filling_s: float | None  # ... the flow running items meanwhile


def _ms_or_none(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 3)


def warm_up(spec: WorkloadSpec, workload: Workload, runtime: Runtime, kernel: str | Kernel | None = None, *,
            probe: bool = True) -> WarmUp:
    """Run a few tasks through each path (Prefect flow on Dask, raw Dask) without timing them.

    Returns the Prefect path's overhead per task as seen there, (wall x threads - compute) /
    tasks: the adaptive controller's stand-in until its own first task finishes; the mean
    compute per item of those tasks (whether the controller's learn item can pay); and how long
    one task takes to come back into a flow that waits and into one that fills meanwhile
    (harness.strategies.probe), for the controller's start: only with `probe` (the run has an
    adaptive strategy), else None.
    """
    n = min(len(workload), WARM_UP_TASKS_PER_THREAD * runtime.worker_threads)
    kernel = spec.cost.kind if kernel is None else kernel
    stage = Stage(workload, workload.sample_indices(n), kernel, spec.faults.retries,
                  runtime.worker_threads, runtime.client)
    warm = Strategy("static", 1)

    def label(variant: str) -> RunLabel:
        return RunLabel(spec.name, str(warm), run_id=runtime.run_id, variant=variant, warm_up=True)

    run_pattern(spec, warm, stage, runtime, label=label("dynamic"))
    run_pattern(spec, Strategy("raw_dask", 1), stage, runtime)
    # Measured on a second pass: the first pays for imports and the workers' calibration. A
    # pattern's twin is one flow with one stage: its wall is tasks, not subflow set-up.
    simplest = pattern_variants(spec)[-1]
    prefect = run_pattern(spec, warm, stage, runtime, simplest, label=label(simplest))
    overhead = (max(0.0, (prefect.wall_s * runtime.worker_threads - prefect.tally.compute_s) / prefect.tasks)
                if prefect.tasks else None)
    item = prefect.tally.compute_s / prefect.tally.items if prefect.tally.items else None
    if not probe:
        return WarmUp(overhead, item, None, None)
    fill = Stage(workload, workload.sample_indices(min(len(workload), PROBE_FILL_ITEMS)), kernel,
                 spec.faults.retries, runtime.worker_threads, runtime.client)
    probes = RunLabel(spec.name, "adaptive", run_id=runtime.run_id, warm_up=True, part="probe")
    with runtime.submitting():
        waiting, filling = call_flow(mapped_stage, lambda s: probe_latencies(s, PROBE_ROUNDS), fill, runtime,
                                     f"{spec.name}-map", label=probes)
    return WarmUp(overhead, item, waiting, filling)


class _Run:
    """One workload run's state, from what it measures to env.json: the plan (fixed before the
    runtime starts), the warm-up's priors, and what each stage leaves for the run folder."""

    def __init__(self, spec: WorkloadSpec, task: UserTask | None, say: EventSink) -> None:
        self.spec = spec
        self.say = say
        self.strategies = strategies_to_run(spec)
        if spec.task is not None and task is None:
            task = load_task(spec)
        self.task = task
        self.workload = task.workload if task is not None else Workload(spec)
        self.kernel: str | Kernel = task.kernel if task is not None else spec.cost.kind
        self.items_total = len(self.workload)
        self.auto = spec.run.repeats == AUTO
        self.records: list[RunRecord] = []
        self.traces: list[pd.DataFrame] = []
        self.task_rows: list[pd.DataFrame] = []  # tasks.csv and the fit's input: each run's tasks, thinned
        self.notes: dict[str, dict[str, list[int]]] = {}  # what a strategy says about its numbers, in which repeats
        if task is not None:  # the report says whose work it measured (in every repeat: no repeat named)
            self.notes["task"] = {f"{task.kernel.function} over {len(self.workload):,} items from {task.items_from}": []}
        self.reports: list[dict[str, object]] = []  # the performance reports written, for env.json
        self.round_s: list[float] = []  # each round's duration, for the budget
        self.decision: settle.Decision | None = None
        self.rounds = 0  # rounds measured so far: the repeat number of the round under way
        self.workers: set[str] | None = None  # the cluster's workers as the last stage (or the warm-up) left them
        self.learned: dict[str, Learned] = {}  # per pattern variant: what the latest cold adaptive stage learned

    def announce(self) -> None:
        """Say what is about to run, and note the start for env.json: when, the workload's
        digest, and the machine's load before the runtime adds to it."""
        spec = self.spec
        self.started_at = time.time()
        planned = "auto" if self.auto else spec.run.repeats
        budget = f", budget {spec.run.budget_s:.0f} s" if self.auto else ""
        self.say(f"starting the runtime for {spec.name} ({self.items_total:,} items, "
                 f"{len(self.strategies)} strategies x {planned} repeats{budget})")
        # Like for like: a [task]'s digest covers its function's code and its items' data too.
        self.task_parts = self.task.digest_parts() if self.task is not None else None
        self.digest = workload_digest(spec, self.workload.expected_compute_s, self.task_parts)
        self.load_at_start = load_now()

    def warm_up_on(self, runtime: Runtime, on_stage: StartupSink | None) -> None:
        """Say the runtime is up, ready its workers for a user's task, and warm it up: the
        adaptive controller's priors and the warm-up's duration, for env.json."""
        self.runtime = runtime
        self.say(f"runtime up: {runtime.startup}")
        self.say(f"Dask dashboard: {runtime.dashboard}" if runtime.dashboard
                 else "Dask dashboard: none (the scheduler serves none; Dask needs bokeh for it)")
        if self.task is not None:
            from harness.runtime.user_code import prepare_workers

            # A cluster of the user's may be on other machines: its workers get the modules shipped.
            self.kernel = prepare_workers(runtime.client, self.task.kernel, self.spec.source or "harness.benchmark",
                                          ship=runtime.startup.get("dask_cluster") == "existing",
                                          also=[self.spec.items.source] if self.spec.items.source else [])
        count_everywhere(runtime.client)  # what each stage sends the Prefect API (runs.csv's prefect_* columns)
        if on_stage is not None:
            on_stage("warm-up")
        t0 = time.perf_counter()
        self.priors = warm_up(self.spec, self.workload, runtime, self.kernel,
                              probe=any(s.kind in ADAPTIVE_KINDS for s in self.strategies))
        self.warm_up_s = time.perf_counter() - t0
        self.workers = current_workers(runtime.client)  # a worker lost from here on is noted
        self.rounds_t0 = time.perf_counter()  # the budget's clock: the measured rounds start now

    def run_rounds(self, tmp: Path, progress: ProgressSink | None, dask_report: bool) -> None:
        """Round after round (each strategy once) until the stop rule says enough."""
        while self._another_round():
            round_t0 = time.perf_counter()
            self._round(tmp, progress, dask_report)
            self.round_s.append(time.perf_counter() - round_t0)
            self.rounds += 1
        self.rounds_elapsed_s = time.perf_counter() - self.rounds_t0  # rounds and the decisions between them

    def _another_round(self) -> bool:
        """The stop rule: the repeats asked for, or with "auto" harness.analysis.settle's decision."""
        spec, repeat = self.spec, self.rounds
        if not self.auto:
            return repeat < spec.run.repeats
        self.decision = settle.decide(records_frame(self.records), self.round_s, time.perf_counter() - self.rounds_t0,
                                      spec.run.budget_s)
        if not self.decision.go_on:
            self.say(f"stopping after round {repeat}: {self.decision.reason}")
            return False
        more = (f" ({self.decision.over_budget})" if self.decision.over_budget
                else f", ~{self.decision.more_within_budget} more within budget" if self.round_s else "")
        self.say(f"round {repeat + 1}{more}")
        return True

    def _round(self, tmp: Path, progress: ProgressSink | None, dask_report: bool) -> None:
        """Every strategy once, each round starting one later (rotated)."""
        repeat = self.rounds
        of = f"round {repeat + 1}" if self.auto else f"{repeat + 1}/{self.spec.run.repeats}"
        # A non-map pattern runs each strategy as written and as its static twin,
        # back to back, which of the two goes first alternating with the repeat.
        variants = pattern_variants(self.spec)
        if repeat % 2:
            variants = variants[::-1]
        runs = [(strategy, variant) for strategy in rotated(self.strategies, repeat) for variant in variants]
        for order, (strategy, variant) in enumerate(runs):
            shown = strategy if len(variants) == 1 else f"{strategy} ({variant})"
            m = strategy.sample_size(self.items_total)
            stage = self._stage(m)
            if strategy.kind == ADAPTIVE_WARM.name:
                stage.learned = self._memory(variant)
            stage.on_progress = progress(f"{shown} {of}", m) if progress else None
            # The first repeat only: one report per strategy is what a reader opens, and
            # the later repeats stay free of its cost (README, "Dask's own diagnostics").
            report_to = tmp / dask_report_file(strategy, variant) if dask_report and repeat == 0 else None
            record = self._measure(strategy, variant, order, stage, report_to)
            sample = f" (sample of {record.items:,})" if record.sampled else ""
            self.say(f"repeat {of} {shown}: {record.wall_s:.3f} s{sample}, "
                     f"{record.tasks} tasks, {record.items_failed} failed")

    def _memory_key(self, variant: str) -> str:
        """The cache key of this workload's adaptive stages: its digest, the variant, the runtime's shape."""
        runtime = self.runtime
        return learned_store.stage_key(self.spec.name, [f"workload {self.digest}", f"variant {variant}",
                                                        f"worker threads {runtime.worker_threads}",
                                                        f"profile {runtime.profile}"])

    def _memory(self, variant: str) -> Learned | None:
        """What adaptive_warm starts from: the latest cold stage's of this run, else the cache's."""
        if variant in self.learned:
            return self.learned[variant]
        return learned_store.load("local", self._memory_key(variant))

    def _stage(self, m: int) -> Stage:
        """A stage over `m` items (all of them, or a sample), with the warm-up's priors as hints."""
        runtime, priors = self.runtime, self.priors
        return Stage(self.workload, None if m == self.items_total else self.workload.sample_indices(m),
                     self.kernel, self.spec.faults.retries, runtime.worker_threads, runtime.client,
                     overhead_hint_s=priors.overhead_s, item_hint_s=priors.item_s,
                     probe_hint_s=priors.probe_s,
                     probe_filling_hint_s=priors.probe_filling_s)

    def _measure(self, strategy: Strategy, variant: str, order: int, stage: Stage, report_to: Path | None) -> RunRecord:
        """Run one strategy's stage under watch and keep what it left: its runs.csv record,
        tasks, trace, notes and performance report."""
        spec, runtime, repeat = self.spec, self.runtime, self.rounds
        label = RunLabel(spec.name, str(strategy), repeat, runtime.run_id, variant)
        stage.on_submitted = getattr(stage.on_progress, "submitted", None)
        # Outermost: reading what the stage sent the API waits for queued events and logs.
        with count_stage(runtime.client) as api, watch_stage(runtime.client, report_to) as watched:
            with LoadProbe() as load, RssSampler() as rss, WorkerWatch(runtime.client, self.workers) as workers:
                t0 = time.perf_counter()
                result = run_pattern(spec, strategy, stage, runtime, variant, label)
                flow_s = time.perf_counter() - t0
        result.notes.extend(workers.notes())
        self.workers = workers.after  # a worker lost before the next stage is that stage's note
        if api.seen is None:
            result.notes.append("what it sent the Prefect API is not recorded: a process could not send its "
                                "queued events or logs, or did not answer")
        if strategy.kind == ADAPTIVE.name and result.learned is not None:  # for adaptive_warm, here and later
            self.learned[variant] = result.learned
            learned_store.save("local", self._memory_key(variant), result.learned)
        tasks = task_frame(result, strategy, repeat, variant, runtime.worker_threads)
        record = with_dask_seen(dataclasses.replace(
            _record(spec, strategy, repeat, order, result, runtime, self.items_total, rss, flow_s, variant, tasks),
            **load.columns(), **api_columns(api.seen)), watched.seen)
        self.task_rows.append(overhead.thinned(tasks))
        self.records.append(record)
        if watched.report is not None:
            self.reports.append({"strategy": str(strategy), "variant": variant, "file": watched.report.name,
                                 "repeat": repeat, "drawn_s": round(watched.closing_s, 3)})
        # A user's task: every failure is news. The synthetic faults are planned, so only a
        # stage with no item succeeding is (the headline then quotes this note).
        failed_note = result.tally.items_failed and (self.task or not result.tally.items_ok)
        for note in result.notes + ([failure_note(result.tally)] if failed_note else []):
            self.notes.setdefault(str(strategy), {}).setdefault(note, []).append(repeat)
        if result.trace:
            self.traces.append(pd.DataFrame(result.trace).assign(strategy=str(strategy), repeat=repeat,
                                                                 variant=variant))
        return record

    def write_records(self, tmp: Path, dask_report: bool) -> None:
        """Check the accounting, then write the records in run_folder.RECORD_FILES' order (the
        small ones a report needs first: a disk that fills late loses the least), each whole."""
        for note in check_accounting(self.records, strict=self.task is None):
            self.notes.setdefault("results", {}).setdefault(note, [])
        tasks_csv = pd.concat(self.task_rows, ignore_index=True) if self.task_rows \
            else pd.DataFrame(columns=list(TASKS_COLUMNS))
        self.records = with_overhead_split(self.records, tasks_csv)
        runs = records_frame(self.records)
        with written(tmp / "runs.csv") as part:
            runs.to_csv(part, index=False)
        env = environment(self._env(dask_report))
        write_json(tmp / "env.json", env)
        trace = pd.concat(self.traces) if self.traces else pd.DataFrame()
        with written(tmp / "trace.csv") as part:
            trace.reindex(columns=list(TRACE_COLUMNS) + [c for c in trace.columns if c not in TRACE_COLUMNS]).to_csv(
                part, index=False)
        with written(tmp / "tasks.csv") as part:
            tasks_csv.to_csv(part, index=False)
        write_results(tmp, runs, env)  # from the data alone: it never waits on the report

    def _env(self, dask_report: bool) -> dict[str, object]:
        """env.json's run-specific part (harness.measure.records.environment adds the machine's)."""
        spec, task, priors, decision = self.spec, self.task, self.priors, self.decision
        repeats_run = len({r.repeat for r in self.records})
        return {
            "workload": {"name": spec.name, "source": spec.source, "items": self.items_total, "seed": spec.seed,
                         "cost": {"kind": spec.cost.kind, "distribution": spec.cost.distribution,
                                  "mean_ms": spec.cost.mean_ms} if spec.cost is not None else None,
                         **({"task": task.describe()} if task is not None else {})},
            "strategies": [str(s) for s in self.strategies],
            "repeats": self.rounds,  # rounds measured (each strategy once per round)
            "repeats_requested": spec.run.repeats,
            "workload_digest": self.digest,
            **({"workload_parts": self.task_parts} if self.task_parts is not None else {}),  # compare names the part that differs
            "load": {"at_start": self.load_at_start, "at_end": load_now()},
            "settling": None if decision is None else {
                "budget_s": spec.run.budget_s, "rounds": self.rounds,
                "rounds_s": round(self.rounds_elapsed_s, 3), "round_s": [round(x, 3) for x in self.round_s],
                "stopped_because": decision.reason, "target_half_width": settle.TARGET_HALF_WIDTH,
                "decisive_factor": settle.DECISIVE_FACTOR, "floor": settle.floor_rounds(len(self.strategies))},
            "runtime": self.runtime.describe(),
            # Figures of a run with Dask performance reports include their cost: compare says so.
            "dask_report": dask_report,
            "dask_reports": self.reports,
            "warm_up_s": round(self.warm_up_s, 3),
            "warm_up_overhead_ms": _ms_or_none(priors.overhead_s),
            "warm_up_item_ms": _ms_or_none(priors.item_s),
            "warm_up_probe_ms": _ms_or_none(priors.probe_s),
            "warm_up_probe_filling_ms": _ms_or_none(priors.probe_filling_s),
            "strategy_notes": {s: [which_repeats(note, seen, repeats_run) for note, seen in said.items()]
                               for s, said in self.notes.items()},
            "phases": [{"at": p.at, "mean_ms": p.mean_ms} for p in (spec.cost.phases if spec.cost else ())],  # for the report's trace plot
            "sampling": {"prefect_task_budget": PREFECT_TASK_BUDGET, "dask_task_budget": DASK_TASK_BUDGET},
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(self.started_at)),
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }


def run_workload(spec: WorkloadSpec, out: Path, *, profile: str | None = None, allow_setting_loss: bool = False,
                 on_event: EventSink | None = None, progress: ProgressSink | None = None,
                 on_committed: CommittedSink | None = None, worker_timeout_s: float | None = None,
                 connect_timeout_s: float | None = None,
                 task: UserTask | None = None, dask_report: bool = False, quiet_prefect: bool = False,
                 on_stage: StartupSink | None = None) -> Path:
    """Run the workload under every strategy and return the completed run folder.

    `profile` None is the default for what runs: `lean` for the harness's own synthetic tasks,
    where it is measured and env.json records the settings it assumed; `stock` for a user's
    `[task]`, whose tasks must see the settings the user's flow sees (harness.runtime.PROFILES).

    A spec with `[task]` runs the user's function: `task` when given (harness.benchmark),
    else loaded from the spec (SpecError before anything starts when it cannot be).

    With `dask_report`, each strategy's first repeat is wrapped in a Dask performance report,
    written into the run folder (dask_report_file) and listed in env.json's `dask_reports`.

    The run id (the folder's name) is drawn first: every flow run carries it as a tag. A
    server the harness starts keeps its database under `out` (`harness ui OUT` shows it);
    `quiet_prefect`: README, "Your Prefect configuration"."""
    say = on_event or (lambda message: None)
    if profile is None:
        profile = STOCK if spec.task is not None else LEAN
    for stale in remove_stale_partials(out, spec.name):
        say(f"removed {stale}: the unfinished folder of a run that was killed")
    run = _Run(spec, task, say)  # a [task] that cannot load is a SpecError here, before anything starts
    run.announce()
    run_id = fresh_run_id(out, spec.name)
    with open_runtime(spec.cluster, profile, allow_setting_loss=allow_setting_loss, on_event=say,
                      worker_timeout_s=worker_timeout_s, connect_timeout_s=connect_timeout_s,
                      results_dir=Path(out), run_id=run_id,
                      quiet_prefect=quiet_prefect, on_stage=on_stage) as runtime, without_flow_heartbeat():
        run.warm_up_on(runtime, on_stage)
        with run_folder(out, spec.name, run_id) as (tmp, final):
            run.run_rounds(tmp, progress, dask_report)
            run.write_records(tmp, dask_report)
        if on_committed is not None:
            on_committed(final)
    return final
