"""The workload file: TOML -> a validated, frozen WorkloadSpec.

Every message a user sees about a bad workload file (or a bad command-line override of one)
is written here. Each names where the problem is (file, table and key, or the option), what
was found and what was expected, e.g.

    workloads/x.toml: [cost] mean_ms: found -1, expected a number > 0 and <= 600_000

Meaning of the [cost] keys:

- `mean_ms` is the mean work per item. For `distribution = "bimodal"` it is instead the
  cost of a light item: light items cost `mean_ms`, heavy ones (a share `heavy_fraction`
  of the items) cost `heavy_ms`.
- `spread` shapes the distribution: "uniform" -> half-width as a fraction of `mean_ms`
  (0 < spread <= 1, so costs stay >= 0); "lognormal" -> sigma (0 < spread <= 4);
  "pareto" -> alpha (1 < spread <= 100; must be given, as the default 1.0 has no finite
  mean). "constant" and "bimodal" ignore it. `heavy_fraction` and `heavy_ms` are accepted
  for every distribution; only "bimodal" uses them.
- `[[cost.phases]]`: from fraction `at` of the items on, `mean_ms` becomes the phase's
  `mean_ms`. The `at` values are strictly increasing, each in (0, 1).

The rules live in small per-table schemas (`_ITEMS`, `_COST`, ...): a key maps to a `_Rule`
holding the type test, the range test and the "expected ..." text used in its messages.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import tomllib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from harness.errors import SpecError
from harness.strategies import REGISTRY, SIZED_STRATEGY_KINDS, STRATEGY_FORMS, STRATEGY_KINDS  # noqa: F401
from harness.strategies import Strategy as StrategyName

PATTERN_KINDS = ("map", "nested_map", "branching", "subflows", "pipeline")
COST_KINDS = ("cpu", "sleep")
DISTRIBUTIONS = ("constant", "uniform", "lognormal", "pareto", "bimodal")
# The adaptive strategy's execution paths that `[faults] path` can break (controller.STRATEGIES).
FAULT_PATHS = ("batched", "inline")


@dataclass(frozen=True)
class ItemsSpec:
    count: int
    payload_bytes: int = 0


@dataclass(frozen=True)
class Phase:
    """From fraction `at` of the items on, the cost distribution's mean becomes `mean_ms`."""

    at: float
    mean_ms: float


@dataclass(frozen=True)
class CostSpec:
    kind: str
    mean_ms: float
    distribution: str = "constant"
    spread: float = 1.0
    heavy_fraction: float = 0.05
    heavy_ms: float = 50.0
    phases: tuple[Phase, ...] = ()


@dataclass(frozen=True)
class FaultSpec:
    transient_rate: float = 0.0
    permanent_rate: float = 0.0
    retries: int = 3
    # An infrastructure failure of a whole task on one execution path of the adaptive strategy
    # (before its items run), for the circuit breaker to route around (harness.breaker).
    path_failure_rate: float = 0.0
    path: str = "batched"


@dataclass(frozen=True)
class PatternSpec:
    kind: str = "map"
    # Pattern-specific keys, kept as given (sorted (key, value) pairs) for the pattern to validate.
    options: tuple[tuple[str, Any], ...] = ()
    # The same keys checked and typed by harness.pattern_spec (None for "map"); derived from
    # `options`, so left out of comparisons.
    settings: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class ClusterSpec:
    workers: int = 2
    threads_per_worker: int = 1
    address: str = ""


@dataclass(frozen=True)
class RunSpec:
    strategies: tuple[StrategyName, ...] = (
        StrategyName("per_item"),
        StrategyName("static", 64),
        StrategyName("adaptive"),
    )
    sweep: tuple[int, ...] = ()
    repeats: int = 3


@dataclass(frozen=True)
class WorkloadSpec:
    name: str
    seed: int
    items: ItemsSpec
    cost: CostSpec
    faults: FaultSpec = field(default_factory=FaultSpec)
    pattern: PatternSpec = field(default_factory=PatternSpec)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    run: RunSpec = field(default_factory=RunSpec)
    description: str = ""
    source: str = ""  # the file it was read from, for messages


# --- public API ---------------------------------------------------------------------------


def load_spec(path: str | os.PathLike[str]) -> WorkloadSpec:
    """Read, parse and validate the workload file at `path`."""
    source = str(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise SpecError(f"{source}: no such workload file") from None
    except OSError as exc:
        raise SpecError(f"{source}: cannot read the workload file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecError(f"{source}: not UTF-8 text (byte {exc.start}); save the file as UTF-8") from None
    return parse_spec(text, source)


def parse_spec(text: str, source: str = "<string>") -> WorkloadSpec:
    """Parse and validate workload TOML `text`; `source` names it in messages."""
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"{source}: invalid TOML: {exc}") from None
    return _read_workload(doc, source)


def parse_strategy(text: str, where: str) -> StrategyName:
    """Parse one strategy name ("per_item", "static:64", ...); `where` names its origin in messages."""
    if not isinstance(text, str):
        raise _fail(where, text, f"a strategy name, one of {_STRATEGY_FORMS}", typed=True)
    return REGISTRY.parse(text, where)


def with_overrides(
    spec: WorkloadSpec,
    *,
    strategies: str | None = None,
    repeats: int | None = None,
    address: str | None = None,
    quick: bool = False,
) -> WorkloadSpec:
    """Apply the command line's overrides; `strategies` is the comma-separated --strategies text.

    `quick` means one repeat and no sweep; it wins over `repeats`.
    """
    run, cluster = spec.run, spec.cluster
    if strategies is not None:
        if not isinstance(strategies, str):
            raise _fail("--strategies", strategies, _STRATEGIES.expected, typed=True)
        run = dataclasses.replace(run, strategies=_STRATEGIES.check(strategies.split(","), "--strategies"))
    if repeats is not None:
        run = dataclasses.replace(run, repeats=_REPEATS.check(repeats, "--repeats"))
    if quick:
        run = dataclasses.replace(run, repeats=1, sweep=())
    if address is not None:
        cluster = dataclasses.replace(cluster, address=_ADDRESS.check(address, "--dask-address"))
    return dataclasses.replace(spec, run=run, cluster=cluster)


def strategies_to_run(spec: WorkloadSpec) -> tuple[StrategyName, ...]:
    """`[run] strategies`, then `static:N` for each N of `[run] sweep`; no duplicates, order kept."""
    sweep = (StrategyName("static", n) for n in spec.run.sweep)
    return tuple(dict.fromkeys((*spec.run.strategies, *sweep)))


# --- messages -----------------------------------------------------------------------------

_TOML_TYPES = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (list, "array"))


@dataclass(frozen=True)
class _Where:
    """A place in a workload file, shown as "file: [table] key"."""

    source: str
    table: str
    key: str = ""

    def __str__(self) -> str:
        return f"{self.source}: {self.table} {self.key}".rstrip()


def _found(value: Any, typed: bool = False) -> str:
    """`value` as a message shows it; numbers get their type only when `typed` (a type mismatch)."""
    if isinstance(value, dict):
        return "a table"
    kind = next((name for t, name in _TOML_TYPES if isinstance(value, t)), type(value).__name__)
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(value) if isinstance(value, (int, float, str, list)) else str(value)
        text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({kind})" if typed or kind not in ("integer", "float") else text


def _fail(where: object, value: Any, expected: str, typed: bool = False) -> SpecError:
    return SpecError(f"{where}: found {_found(value, typed)}, expected {expected}")


def _did_you_mean(word: str, options: Iterable[str], template: str) -> str:
    """`template` filled with the option closest to `word`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return template.format(repr(close[0])) if close else ""


def _unknown(where: str, noun: str, name: str, allowed: Iterable[str]) -> SpecError:
    allowed = list(allowed)
    hint = _did_you_mean(name, allowed, " (did you mean {}?)")
    return SpecError(f"{where}: unknown {noun}{hint}, expected one of: {', '.join(allowed)}")


# --- rules --------------------------------------------------------------------------------


def _always(value: Any) -> bool:
    return True


def _as_is(value: Any, where: object) -> Any:
    return value


@dataclass(frozen=True)
class _Rule:
    """How one key is checked: a type test, a range test, and the text of what is expected."""

    expected: str
    accepts: Callable[[Any], bool]  # the type; failing shows the found value's type
    valid: Callable[[Any], bool] = _always  # the range
    convert: Callable[[Any, Any], Any] = _as_is  # (value, where) -> stored value; may raise itself
    required: bool = False

    def check(self, value: Any, where: object) -> Any:
        if not self.accepts(value):
            raise _fail(where, value, self.expected, typed=True)
        if not self.valid(value):
            raise _fail(where, value, self.expected)
        return self.convert(value, where)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _note(note: str) -> str:
    return f" ({note})" if note else ""


def _integer(lo: int, hi: int | None = None, *, note: str = "", required: bool = False) -> _Rule:
    span = f">= {lo:_}" if hi is None else f"from {lo:_} to {hi:_}"
    return _Rule(
        f"an integer {span}{_note(note)}",
        _is_int,
        lambda v: lo <= v and (hi is None or v <= hi),
        required=required,
    )


def _number(
    lo: float,
    hi: float | None = None,
    *,
    lo_open: bool = True,
    hi_open: bool = False,
    note: str = "",
    required: bool = False,
) -> _Rule:
    def show(x: float) -> str:
        return f"{x:_}" if isinstance(x, int) else repr(x)

    span = f"{'>' if lo_open else '>='} {show(lo)}"
    if hi is not None:
        span += f" and {'<' if hi_open else '<='} {show(hi)}"

    def valid(v: float) -> bool:
        above = lo < v if lo_open else lo <= v
        below = hi is None or (v < hi if hi_open else v <= hi)
        return math.isfinite(v) and above and below

    return _Rule(f"a number {span}{_note(note)}", _is_number, valid, lambda v, w: float(v), required)


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _choice(options: tuple[str, ...], *, required: bool = False) -> _Rule:
    return _Rule(f"one of {', '.join(map(repr, options))}", _is_str, options.__contains__, required=required)


def _matching(pattern: str, expected: str, *, required: bool = False) -> _Rule:
    regex = re.compile(pattern)
    return _Rule(expected, _is_str, lambda v: regex.fullmatch(v) is not None, required=required)


def _array(
    expected: str, item: Callable[[Any, str, int], Any], *, non_empty: bool = False, noun: str = "value"
) -> _Rule:
    """A list whose entries `item(value, where, index)` checks (index from 1), each at most once."""

    def convert(values: list[Any], where: object) -> tuple[Any, ...]:
        out: list[Any] = []
        for i, value in enumerate(values, 1):
            entry = item(value, str(where), i)
            if entry in out:
                shown = repr(str(entry)) if isinstance(entry, StrategyName) else repr(entry)
                raise SpecError(f"{where}: found {shown} twice, expected each {noun} at most once")
            out.append(entry)
        return tuple(out)

    return _Rule(expected, lambda v: isinstance(v, list), lambda v: bool(v) or not non_empty, convert)


def _freeze(value: Any) -> Any:
    """Lists -> tuples, tables -> key-sorted tuples of pairs, so a frozen dataclass can hold them."""
    if isinstance(value, dict):
        return tuple(sorted(((k, _freeze(v)) for k, v in value.items()), key=lambda kv: kv[0]))
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _read_table(
    raw: dict[str, Any], source: str, table: str, schema: dict[str, _Rule], *, also: Iterable[str] = ()
) -> dict[str, Any]:
    """Check `raw` against `schema`; return the checked values of the keys present.

    Keys in `also` are allowed but left to the caller. Absent optional keys take the
    dataclass default when the result is passed as keyword arguments.
    """
    allowed = [*schema, *also]
    for key in raw:
        if key not in allowed:
            raise _unknown(f"{source}: {table} {key}", "key", key, allowed)
    values = {}
    for key, rule in schema.items():
        where = _Where(source, table, key)
        if key in raw:
            values[key] = rule.check(raw[key], where)
        elif rule.required:
            raise SpecError(f"{where}: missing (a required key), expected {rule.expected}")
    return values


# --- the schema ---------------------------------------------------------------------------

_STRATEGY_FORMS = STRATEGY_FORMS

_MEAN_MS = _number(0, 600_000, note="milliseconds", required=True)
_PHASE_KEYS = {
    "at": _number(0, 1, hi_open=True, note="a fraction of the items", required=True),
    "mean_ms": _MEAN_MS,
}


def _read_phases(values: list[Any], where: _Where) -> tuple[Phase, ...]:
    phases: list[Phase] = []
    for i, raw in enumerate(values, 1):
        table = f"[[cost.phases]] #{i}"
        if not isinstance(raw, dict):
            raise _fail(f"{where.source}: {table}", raw, "a table with keys at and mean_ms", typed=True)
        phase = Phase(**_read_table(raw, where.source, table, _PHASE_KEYS))
        if phases and phase.at <= phases[-1].at:
            expected = f"a number > {phases[-1].at!r} (phases must be listed in increasing order of at)"
            raise _fail(_Where(where.source, table, "at"), phase.at, expected)
        phases.append(phase)
    return tuple(phases)


_TOP = {
    "name": _matching(
        r"[a-z0-9_-]+", "a name of lower-case letters, digits, '_' and '-' ([a-z0-9_-]+)", required=True
    ),
    "description": _Rule("a string", _is_str),
    "seed": _integer(0, required=True),
}
_ITEMS = {
    "count": _integer(1, 10_000_000, required=True),
    "payload_bytes": _integer(0, 16 * 1024 * 1024, note="16 MiB"),
}
_COST = {
    "kind": _choice(COST_KINDS, required=True),
    "mean_ms": _MEAN_MS,
    "distribution": _choice(DISTRIBUTIONS),
    "spread": _number(0),  # the range per distribution is checked in _read_cost
    "heavy_fraction": _number(0, 1, lo_open=False),
    "heavy_ms": dataclasses.replace(_MEAN_MS, required=False),
    "phases": _Rule(
        "an array of tables ([[cost.phases]])", lambda v: isinstance(v, list), convert=_read_phases
    ),
}
_SPREAD = {
    "uniform": _number(0, 1, note="uniform: half-width as a fraction of mean_ms"),
    "lognormal": _number(0, 4, note="lognormal: sigma"),
    "pareto": _number(1, 100, note="pareto: alpha"),
}
_FAULTS = {
    "transient_rate": _number(0, 1, lo_open=False, hi_open=True),
    "permanent_rate": _number(0, 1, lo_open=False),
    "retries": _integer(0, 100),
    "path_failure_rate": _number(0, 1, lo_open=False),
    "path": _choice(FAULT_PATHS),
}
_PATTERN_KIND = _choice(PATTERN_KINDS)
_ADDRESS = _matching(
    r"|(tcp|tls|inproc|ucx)://\S+",
    '"" (start a local cluster) or a scheduler address such as "tcp://127.0.0.1:8786" '
    "(scheme tcp, tls, inproc or ucx)",
)
_CLUSTER = {
    "workers": _integer(1, 256),
    "threads_per_worker": _integer(1, 256),
    "address": _ADDRESS,
}
_STRATEGIES = _array(
    f'a non-empty array of strategy names such as ["per_item", "static:64", "adaptive"]; '
    f"each one of {_STRATEGY_FORMS}",
    lambda value, where, i: parse_strategy(value, where),
    non_empty=True,
    noun="strategy",
)
_REPEATS = _integer(1, 100)
_RUN = {
    "strategies": _STRATEGIES,
    "sweep": _array(
        "an array of distinct integers >= 1 (static batch sizes), e.g. [1, 16, 256]",
        lambda value, where, i: _integer(1).check(value, f"{where} #{i}"),
    ),
    "repeats": _REPEATS,
}


def _read_cost(raw: dict[str, Any], source: str, table: str) -> CostSpec:
    values = _read_table(raw, source, table, _COST)
    distribution = values.get("distribution", CostSpec.distribution)
    rule = _SPREAD.get(distribution)
    if rule is not None:
        where = _Where(source, table, "spread")
        if "spread" in values:
            rule.check(values["spread"], where)
        elif not rule.valid(CostSpec.spread):
            raise SpecError(
                f"{where}: missing, expected {rule.expected}; distribution {distribution!r} needs it "
                f"(the default {CostSpec.spread!r} is not valid there)"
            )
    return CostSpec(**values)


def _read_pattern(raw: dict[str, Any], source: str, table: str) -> PatternSpec:
    kind = PatternSpec.kind
    if "kind" in raw:
        kind = _PATTERN_KIND.check(raw["kind"], _Where(source, table, "kind"))
    extra = sorted(key for key in raw if key != "kind")
    if kind == "map" and extra:
        others = ", ".join(k for k in PATTERN_KINDS if k != "map")
        raise SpecError(
            f"{source}: {table} {extra[0]}: unknown key for kind 'map', expected only: kind "
            f"(pattern-specific keys belong to the kinds {others})"
        )
    # Imported here: harness.pattern_spec builds on this module's errors.
    from harness.pattern_spec import read_pattern_options

    options = {key: raw[key] for key in extra}
    return PatternSpec(kind, _freeze(options), read_pattern_options(kind, options, source, table))


def _simple(cls: type, schema: dict[str, _Rule]) -> Callable[[dict[str, Any], str, str], Any]:
    return lambda raw, source, table: cls(**_read_table(raw, source, table, schema))


_TABLES: dict[str, Callable[[dict[str, Any], str, str], Any]] = {
    "items": _simple(ItemsSpec, _ITEMS),
    "cost": _read_cost,
    "faults": _simple(FaultSpec, _FAULTS),
    "pattern": _read_pattern,
    "cluster": _simple(ClusterSpec, _CLUSTER),
    "run": _simple(RunSpec, _RUN),
}


def _read_workload(doc: dict[str, Any], source: str) -> WorkloadSpec:
    tables = [f"[{name}]" for name in _TABLES]
    for key, value in doc.items():
        if key in _TOP:
            continue
        if key not in _TABLES:
            if isinstance(value, dict):
                raise _unknown(f"{source}: [{key}]", "table", f"[{key}]", tables)
            raise _unknown(f"{source}: [top level] {key}", "key", key, [*_TOP, *tables])
        if not isinstance(value, dict):
            raise _fail(f"{source}: [{key}]", value, f"a table ([{key}] followed by its keys)", typed=True)
    top = _read_table(doc, source, "[top level]", _TOP, also=_TABLES)
    parts = {name: read(doc.get(name, {}), source, f"[{name}]") for name, read in _TABLES.items()}
    return WorkloadSpec(**top, **parts, source=source)
