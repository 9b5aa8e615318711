"""The pytest plugin shipped with the harness (entry point `pytest11`, so installing the package
is enough): the `harness_benchmark` fixture benchmarks a user's function over their items
under several batching strategies, one pytest-benchmark entry per strategy (docs/guard-in-ci.md).

    def test_scoring_is_batched_well(harness_benchmark):
        result = harness_benchmark(score, items, strategies=["adaptive", "static:256"], workers=2)
        assert result.identical and result.ratio("adaptive", "static:256").value < 1.25

One runtime per session (a Prefect API and a Dask cluster, `harness.local_runtime`), started on
the first call and stopped at the session's end; or the user's: PREFECT_API_URL and
--harness-dask-address. Each strategy is timed as the mapping stage alone, all rounds of a call
inside one flow run (harness.api.benchmarking).

What this relies on in pytest-benchmark (5.x): `config._benchmarksession` (its `options`,
`benchmarks`, `logger`, `disabled`: the session object its own `benchmark` fixture reads) and
`BenchmarkFixture` built the way that fixture builds it, with its public attributes `name`,
`fullname`, `param`, `params`, `group`, `extra_info` set per strategy before `pedantic`.
`harness_benchmark` requests the `benchmark` fixture itself (its first strategy's entry), so
--benchmark-skip, --benchmark-only and --benchmark-disable treat its tests as benchmarks.

Loading this module must stay cheap (pytest loads it in every session of an environment that
has the harness): Prefect, Dask and the harness's machinery are imported on first use.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

# Built-in defaults; [tool.pytest.ini_options] keys, then --harness-* switches, then a call's
# own arguments override them, in that order.
# 5 rounds: the fewest that leave a ratio's exact 95 % interval (4 a side) and a median one
# disturbed round cannot move, at a few seconds per strategy for a small stage.
DEFAULT_ROUNDS = 5
DEFAULT_WORKERS = 2
DEFAULT_THREADS_PER_WORKER = 1
# The controller against one fixed batch size: the comparison a user's guard usually makes.
# per_item is left out: at 35-75 ms of Prefect overhead per item it takes minutes on thousands.
DEFAULT_STRATEGIES = ("adaptive", "static:64")
# harness.runtime's PROFILES, spelled out: importing harness.runtime loads Dask.
PROFILES = ("stock", "lean")

_HAS_PYTEST_BENCHMARK = importlib.util.find_spec("pytest_benchmark") is not None


@dataclass(frozen=True)
class Settings:
    """The session's defaults, validated once (pytest_configure)."""

    rounds: int
    workers: int
    threads_per_worker: int
    strategies: tuple[str, ...]
    dask_address: str
    profile: str


_SETTINGS = pytest.StashKey[Settings]()

# (ini key, --switch, help, default as ini text)
_KNOBS = (
    ("harness_rounds", "--harness-rounds", "harness_benchmark: rounds per strategy", str(DEFAULT_ROUNDS)),
    ("harness_workers", "--harness-workers", "harness_benchmark: Dask worker processes of the local cluster",
     str(DEFAULT_WORKERS)),
    ("harness_threads_per_worker", "--harness-threads-per-worker",
     "harness_benchmark: threads per worker of the local cluster", str(DEFAULT_THREADS_PER_WORKER)),
    ("harness_dask_address", "--harness-dask-address",
     "harness_benchmark: run on this existing Dask scheduler (with the PREFECT_API_URL of the environment) "
     "instead of starting a local cluster", ""),
    ("harness_profile", "--harness-profile",
     "harness_benchmark: the runtime profile, stock (default: tasks see this process's Prefect settings) or lean",
     "stock"),
)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("harness", "harness_benchmark (the harness's pytest plugin)")
    for key, switch, help_text, default in _KNOBS:
        parser.addini(key, f"{help_text} (default {default or 'none'})", default=default)
        group.addoption(switch, dest=key, default=None, metavar="VALUE", help=f"{help_text}; overrides the ini key {key}")
    parser.addini("harness_strategies", "harness_benchmark: strategies a call measures when it names none "
                  f"(default {' '.join(DEFAULT_STRATEGIES)})", type="linelist", default=list(DEFAULT_STRATEGIES))
    group.addoption("--harness-strategies", dest="harness_strategies", default=None, metavar="A,B",
                    help="harness_benchmark: comma-separated strategies; overrides the ini key harness_strategies")


def _setting(config: pytest.Config, key: str) -> Any:
    given = config.getoption(key)
    return given if given is not None else config.getini(key)


def _whole(config: pytest.Config, key: str, switch: str) -> int:
    raw = _setting(config, key)
    try:
        value = int(str(raw).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise pytest.UsageError(f"harness: {switch} (or the ini key {key}): found {raw!r}, expected a whole number >= 1")
    return value


def pytest_configure(config: pytest.Config) -> None:
    from harness.errors import SpecError
    from harness.workload.vocabulary import Strategy

    raw = config.getoption("harness_strategies")
    strategies = [s.strip() for s in raw.split(",") if s.strip()] if raw is not None else \
        list(config.getini("harness_strategies"))
    if not strategies:
        raise pytest.UsageError("harness: --harness-strategies (or the ini key harness_strategies): found none, "
                                "expected strategy names such as adaptive, static:64")
    for text in strategies:
        try:
            Strategy.parse(text, "harness: --harness-strategies (or the ini key harness_strategies)")
        except SpecError as exc:
            raise pytest.UsageError(str(exc)) from None
    profile = str(_setting(config, "harness_profile")).strip()
    if profile not in PROFILES:
        raise pytest.UsageError(f"harness: --harness-profile (or the ini key harness_profile): found {profile!r}, "
                                f"expected one of {', '.join(PROFILES)}")
    config.stash[_SETTINGS] = Settings(
        rounds=_whole(config, "harness_rounds", "--harness-rounds"),
        workers=_whole(config, "harness_workers", "--harness-workers"),
        threads_per_worker=_whole(config, "harness_threads_per_worker", "--harness-threads-per-worker"),
        strategies=tuple(strategies),
        dask_address=str(_setting(config, "harness_dask_address")).strip(),
        profile=profile,
    )


@pytest.fixture(scope="session")
def harness_runtime(pytestconfig: pytest.Config) -> Iterator[Any]:
    """The session's runtime for `harness_benchmark` (harness.api.benchmarking.SessionRuntime):
    started on the first call, stopped at the session's end. Override it in a conftest.py to
    hand the benchmarks a runtime of your own: `SessionRuntime(fixed=runtime)`."""
    from harness.api.benchmarking import SessionRuntime

    settings = pytestconfig.stash[_SETTINGS]
    runtime = SessionRuntime(address=settings.dask_address, profile=settings.profile)
    try:
        yield runtime
    finally:
        runtime.close()


class HarnessBenchmark:
    """The callable `harness_benchmark` fixture of one test."""

    _ARGUMENTS = ("strategies", "workers", "threads_per_worker", "rounds")

    def __init__(self, request: pytest.FixtureRequest, benchmark: Any, runtime: Any, settings: Settings) -> None:
        self._request = request
        self._benchmark = benchmark  # pytest-benchmark's own fixture: the first entry of the first call
        self._runtime = runtime
        self._settings = settings
        self._names: set[str] = set()

    def __call__(self, fn: Any, items: Iterable[Any], *, strategies: Iterable[str] | None = None,
                 workers: int | None = None, threads_per_worker: int | None = None, rounds: int | None = None,
                 **unknown: Any) -> Any:
        """Run `fn` over `items` under each strategy, `rounds` rounds each; returns a result with
        `.median(strategy)` (seconds), `.ratio(a, b)` (`.value`, `.low`, `.high`) and `.identical`.
        Unset arguments take the session's defaults ([tool.pytest.ini_options] harness_* keys,
        --harness-* switches)."""
        from harness.errors import HarnessError

        try:
            return self._run(fn, items, strategies, workers, threads_per_worker, rounds, unknown)
        except HarnessError as exc:
            pytest.fail(str(exc) if str(exc).startswith("harness_benchmark") else f"harness_benchmark: {exc}",
                        pytrace=False)

    def _run(self, fn: Any, items: Iterable[Any], strategies: Iterable[str] | None, workers: int | None,
             threads_per_worker: int | None, rounds: int | None, unknown: dict[str, Any]) -> Any:
        from harness.api.benchmarking import import_up_front, measure_function, positive_int
        from harness.errors import SpecError
        from harness.work.shipped import ship
        from harness.work.user_task import check_items, take_items
        from harness.workload.spec import parse_strategy

        if unknown:
            raise SpecError(f"harness_benchmark: unknown argument {sorted(unknown)[0]!r}, expected fn, items and "
                            f"{', '.join(self._ARGUMENTS)}")
        settings = self._settings
        rounds = positive_int(settings.rounds if rounds is None else rounds, "harness_benchmark: rounds")
        workers = positive_int(settings.workers if workers is None else workers, "harness_benchmark: workers")
        threads = positive_int(settings.threads_per_worker if threads_per_worker is None else threads_per_worker,
                               "harness_benchmark: threads_per_worker")
        names = settings.strategies if strategies is None else strategies
        if isinstance(names, str) or not isinstance(names, Iterable):
            raise SpecError(f"harness_benchmark: strategies: found {names!r}, expected a list of strategy names "
                            f"such as [\"adaptive\", \"static:64\"]")
        chosen = [parse_strategy(s, "harness_benchmark: strategies") for s in names]
        if not chosen:
            raise SpecError("harness_benchmark: strategies: found an empty list, expected at least one strategy name")
        repeated = sorted({str(s) for s in chosen if [str(c) for c in chosen].count(str(s)) > 1})
        if repeated:
            raise SpecError(f"harness_benchmark: strategies: found {repeated[0]!r} twice, expected each once")
        if isinstance(items, (str, bytes)) or not isinstance(items, Iterable):
            raise SpecError(f"harness_benchmark: items: found a {type(items).__name__}, expected an iterable of items "
                            f"(a list, a range, a generator)")
        values = take_items(items, None, "harness_benchmark: items", remedy="pass the first N, e.g. items[:N]")
        check_items(values, "harness_benchmark: items")
        kernel = ship(fn, "harness_benchmark: fn")
        entries = {str(s): self._entry_name(str(s)) for s in chosen}
        again = [name for name, _ in entries.values() if name in self._names]
        if again:
            raise SpecError(f"harness_benchmark: {again[0]} was already measured in this test, expected each "
                            f"strategy once per test (one pytest-benchmark entry each)")
        self._names.update(name for name, _ in entries.values())
        import_up_front()  # before any thread of the runtime starts (its docstring)
        runtime = self._runtime.get(workers, threads)

        def fixture_for(strategy: Any) -> Any:
            return self._fixture(str(strategy), *entries[str(strategy)])

        node = self._request.node
        return measure_function(runtime, kernel, values, chosen, rounds, fixture_for,
                                f"harness-benchmark-{getattr(node, 'originalname', node.name)}")

    def _entry_name(self, strategy: str) -> tuple[str, str]:
        """(name, fullname) of a strategy's entry: test_name[strategy], or test_name[param-strategy]
        for a parametrized test."""
        node = self._request.node
        callspec = getattr(node, "callspec", None)
        ident = f"{callspec.id}-{strategy}" if callspec is not None else strategy
        name = f"{getattr(node, 'originalname', node.name)}[{ident}]"
        prefix = node.nodeid[: len(node.nodeid) - len(node.name)]
        return name, prefix + name

    def _fixture(self, strategy: str, name: str, fullname: str) -> Any:
        """A pytest-benchmark fixture for one strategy's entry: its own for the first, then new
        ones built as its `benchmark` fixture builds them (pytest_benchmark/plugin.py)."""
        if self._benchmark is not None:
            fixture, self._benchmark = self._benchmark, None
        else:
            from pytest_benchmark.fixture import BenchmarkFixture
            from pytest_benchmark.utils import NameWrapper

            session = self._request.config._benchmarksession
            node = self._request.node
            marker = node.get_closest_marker("benchmark")
            options: dict[str, Any] = dict(marker.kwargs) if marker else {}
            if "timer" in options:
                options["timer"] = NameWrapper(options["timer"])
            fixture = BenchmarkFixture(node, add_stats=session.benchmarks.append, logger=session.logger,
                                       warner=node.warn, disabled=session.disabled, **dict(session.options, **options))
        callspec = getattr(self._request.node, "callspec", None)
        fixture.name, fixture.fullname = name, fullname
        fixture.param = f"{callspec.id}-{strategy}" if callspec is not None else strategy
        fixture.params = {**(callspec.params if callspec is not None else {}), "strategy": strategy}
        # The table groups a test's strategies together unless a group was asked for.
        fixture.group = fixture.group or getattr(self._request.node, "originalname", self._request.node.name)
        return fixture


if _HAS_PYTEST_BENCHMARK:
    @pytest.fixture
    def harness_benchmark(request: pytest.FixtureRequest, benchmark: Any, harness_runtime: Any) -> HarnessBenchmark:
        """`harness_benchmark(fn, items, *, strategies, workers=2, threads_per_worker=1, rounds=5)`:
        `fn` over `items` under each strategy on the session's Prefect API and Dask cluster, one
        pytest-benchmark entry per strategy (test_name[strategy]); returns `.median(strategy)`,
        `.ratio(a, b)` and `.identical` (docs/guard-in-ci.md)."""
        return HarnessBenchmark(request, benchmark, harness_runtime, request.config.stash[_SETTINGS])
else:
    @pytest.fixture
    def harness_benchmark(request: pytest.FixtureRequest) -> HarnessBenchmark:
        """Needs pytest-benchmark: pip install 'prefect-dask-harness[test]' (or pytest-benchmark)."""
        pytest.fail("harness_benchmark needs pytest-benchmark, which is not installed: "
                    "pip install pytest-benchmark (or prefect-dask-harness[test])", pytrace=False)
