"""The workload file: TOML -> a validated, frozen WorkloadSpec (Pydantic models).

Every message a user sees about a bad workload file (or a bad command-line override of one)
is written here, by `_explain` from pydantic's errors. Each names where the problem is (file,
table and key, or the option), what was found and what was expected, e.g.

    workloads/x.toml: [cost] mean_ms: found -1, expected a number > 0 and <= 600_000

The rules are the models' annotations (harness.workload.rules): each carries its bounds and the
"expected ..." text built from them. `python -m harness schema` prints them as JSON Schema.

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
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import stat
import sys
import tomllib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Annotated, Any

from pydantic import PlainValidator, TypeAdapter, ValidationError, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from harness.errors import SpecError
from harness.workload.pattern_options import PATTERN_OPTIONS, MapOptions, PatternSpec
from harness.workload.vocabulary import COST_KINDS, REGISTRY, STRATEGY_FORMS, PATTERN_KINDS, Strategy
from harness.workload.rules import (
    TEXT,
    Expected,
    Problem,
    choice,
    distinct,
    integer,
    matching,
    number,
    spec_model,
)

DISTRIBUTIONS = ("constant", "uniform", "lognormal", "pareto", "bimodal")
# The adaptive strategy's execution paths that `[faults] path` can break (controller.STRATEGIES).
FAULT_PATHS = ("batched", "inline")
_STRATEGY_FORMS = STRATEGY_FORMS
# The patterns that run a user's [task]: the others read or rewrite synthetic items' costs and
# attributes (groups, quality routes, scaled pipeline steps).
USER_TASK_PATTERNS = ("map",)
# A Problem's `found` for a key that a rule across tables requires (said as pydantic's "missing").
MISSING_KEY = "missing (a required key)"
# The `source` of a spec harness.benchmark builds: its items are Python objects, not [items] keys.
BENCHMARK_SOURCE = "harness.benchmark"
# The most items one run holds ([items] count's upper bound). Every item lives in the flow
# process (a [task]'s as a list, for random access by the strategies and samples), so an
# [items] source read without a count stops here (harness.work.user_task) rather than filling memory.
MAX_ITEMS = 10_000_000

def _parse_strategy(text: Any) -> Strategy:
    """A strategy name ("per_item", "static:64", ...) through the strategy registry; raises Problem."""
    if isinstance(text, Strategy):
        return text
    if not isinstance(text, str):
        raise Problem((), text, f"a strategy name, one of {_STRATEGY_FORMS}", found=_found(text, typed=True))
    strategy, problem = REGISTRY.explain(text)
    if strategy is None:
        raise Problem((), text, f"one of {_STRATEGY_FORMS}", found=f"{text!r} ({problem})")
    return strategy


_STRATEGIES_EXPECTED = (f'a non-empty array of strategy names such as ["per_item", "static:64", "adaptive"]; '
                        f"each one of {_STRATEGY_FORMS}")


def _strategies(values: Any) -> tuple[Strategy, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise Problem((), values, _STRATEGIES_EXPECTED, found=_found(values, typed=True))
    return distinct("strategy", lambda s: repr(str(s))).func(tuple(map(_parse_strategy, values)))


# --- the models: one per table ------------------------------------------------------------

_MEAN_MS = number(0, 600_000, note="milliseconds")


_REF_REGEX = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
_REF = matching(_REF_REGEX, '"module:attribute", e.g. "spectra:peak" (the module importable from the '
                'workload file\'s folder)')
_OPTIONAL_REF = matching(f"|{_REF_REGEX}", '"" or "module:attribute", e.g. "spectra:peaks"')


@spec_model
class ItemsSpec:
    """Synthetic items (with [cost]): `count` and `payload_bytes`. A user's items (with [task]):
    `source` or `path`, and optionally `count` (the first N only)."""

    count: integer(1, MAX_ITEMS) | None = None
    payload_bytes: integer(0, 16 * 1024 * 1024, note="16 MiB") = 0
    source: _OPTIONAL_REF = ""  # "module:attribute": a callable returning an iterable of items
    path: TEXT = ""  # a data file read with pandas (CSV, Parquet, JSON lines), relative to the workload file


@spec_model
class TaskSpec:
    """A user's function instead of the synthetic kernel (harness.work.user_task)."""

    function: _REF  # one item in, one result out
    batch_function: _OPTIONAL_REF = ""  # a list of items in, a list of results out
    # For an `async def` function: the most of its items that wait at once in one task, under
    # every strategy (a rate-limited service). Only an async function has items waiting at once,
    # so load_task refuses it for a plain one (the check imports the function: not a model rule).
    max_concurrency: integer(1, note="items of an async def function at once in one task") | None = None


@spec_model
class Phase:
    """From fraction `at` of the items on, the cost distribution's mean becomes `mean_ms`."""

    at: number(0, 1, hi_open=True, note="a fraction of the items")
    mean_ms: _MEAN_MS


# The range of `spread` per distribution (the others ignore it).
_SPREAD = {
    "uniform": number(0, 1, note="uniform: half-width as a fraction of mean_ms"),
    "lognormal": number(0, 4, note="lognormal: sigma"),
    "pareto": number(1, 100, note="pareto: alpha"),
}

_SPREAD_CHECKS = {distribution: TypeAdapter(rule) for distribution, rule in _SPREAD.items()}


@spec_model
class CostSpec:
    kind: choice(COST_KINDS)
    mean_ms: _MEAN_MS
    distribution: choice(DISTRIBUTIONS) = "constant"
    spread: number(0) = 1.0  # its range per distribution: _SPREAD
    heavy_fraction: number(0, 1, lo_open=False) = 0.05
    heavy_ms: _MEAN_MS = 50.0
    phases: Annotated[tuple[Phase, ...], Expected("an array of tables ([[cost.phases]])")] = ()

    @model_validator(mode="after")
    def _spread_and_phase_order(self) -> CostSpec:
        rule = _SPREAD.get(self.distribution)
        if rule is not None:
            try:
                _SPREAD_CHECKS[self.distribution].validate_python(self.spread)
            except ValidationError:
                raise Problem(("spread",), self.spread, _expected(rule), if_missing=(
                    f"distribution {self.distribution!r} needs it")) from None
        for i in range(1, len(self.phases)):
            if self.phases[i].at <= self.phases[i - 1].at:
                expected = f"a number > {self.phases[i - 1].at!r} (phases must be listed in increasing order of at)"
                raise Problem(("phases", i, "at"), self.phases[i].at, expected)
        return self


@spec_model
class FaultSpec:
    transient_rate: number(0, 1, lo_open=False, hi_open=True) = 0.0
    permanent_rate: number(0, 1, lo_open=False) = 0.0
    retries: integer(0, 100) = 3
    # An infrastructure failure of a whole task on one execution path of the adaptive strategy
    # (before its items run), for the circuit breaker to route around (harness.policy.breaker).
    path_failure_rate: number(0, 1, lo_open=False) = 0.0
    path: choice(FAULT_PATHS) = "batched"


_ADDRESS = matching(r"|(tcp|tls|inproc|ucx)://\S+", '"" (start a local cluster) or a scheduler address such as '
                    '"tcp://127.0.0.1:8786" (scheme tcp, tls, inproc or ucx)')


_PEM_PATH = matching(r".+", "the path of a PEM file (relative to the file that names it, or absolute)")


@spec_model
class SecuritySpec:
    """TLS for a `tls://` scheduler address: the CA that signed the scheduler's certificate, and
    this client's certificate and key (a Dask scheduler started with --tls-ca-file asks for one)."""

    ca_file: _PEM_PATH
    cert: _PEM_PATH
    key: _PEM_PATH


@spec_model
class ClusterSpec:
    workers: integer(1, 256) = 2
    threads_per_worker: integer(1, 256) = 1
    address: _ADDRESS = ""
    # Only for a tls:// address (harness.runtime.cluster refuses it elsewhere); --dask-security
    # gives the same keys in a file of their own.
    security: SecuritySpec | None = None


_STRATEGY_SCHEMA = {"type": "array", "minItems": 1, "uniqueItems": True, "description": _STRATEGIES_EXPECTED,
                    "items": {"type": "string", "pattern": r"^\s*(per_item|adaptive|adaptive_warm|joblib_auto|"
                                                           r"(static|raw_dask):[0-9]*[1-9][0-9]*)\s*$"}}


AUTO = "auto"
# repeats = "auto" spends at most this long on measured rounds. large.toml's round (every
# strategy once) takes ~2 min on the 2-core reference machine, so 600 s holds the 4 rounds a
# verdict needs (harness.analysis.stats.repeats_needed) and a 5th when they are quick: ~10 min in all.
DEFAULT_BUDGET_S = 600.0
_REPEATS_EXPECTED = 'an integer from 1 to 100, or "auto" (rounds until the verdicts settle, within budget_s)'
_REPEATS_SCHEMA = {"description": _REPEATS_EXPECTED,
                   "anyOf": [{"type": "integer", "minimum": 1, "maximum": 100}, {"const": AUTO}]}


def _repeats(value: Any) -> int | str:
    if value == AUTO:
        return AUTO
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 100:
        raise Problem((), value, _REPEATS_EXPECTED, found=_found(value, typed=not isinstance(value, int)))
    return value


@spec_model
class RunSpec:
    strategies: Annotated[tuple[Strategy, ...], PlainValidator(_strategies),
                          WithJsonSchema(_STRATEGY_SCHEMA)] = (
        Strategy("per_item"),
        Strategy("static", 64),
        Strategy("adaptive"),
    )
    sweep: Annotated[tuple[integer(1, sys.maxsize), ...], distinct("value"),
                     Expected("an array of distinct integers >= 1 (static batch sizes), e.g. [1, 16, 256]")] = ()
    # "auto": rounds until adaptive's ratios settle or the budget is spent (harness.measure.run); an
    # integer: exactly that many rounds.
    repeats: Annotated[int | str, PlainValidator(_repeats), WithJsonSchema(_REPEATS_SCHEMA)] = AUTO
    budget_s: number(0, 86_400, note="seconds of measured rounds, for repeats = \"auto\"") = DEFAULT_BUDGET_S


@spec_model
class WorkloadSpec:
    name: matching(r"[a-z0-9_-]+", "a name of lower-case letters, digits, '_' and '-' ([a-z0-9_-]+)")
    # Keyword-only: listed here so that messages name the top-level keys in this order.
    description: TEXT = field(default="", kw_only=True)
    seed: integer(0) = field(default=0, kw_only=True)  # only synthetic items use it
    items: ItemsSpec
    cost: CostSpec | None = None
    faults: FaultSpec = field(default_factory=FaultSpec)
    pattern: PatternSpec = field(default_factory=MapOptions)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    run: RunSpec = field(default_factory=RunSpec)
    task: TaskSpec | None = None  # instead of [cost]: the user's function (listed last: [cost] is the usual one)
    source: SkipJsonSchema[str] = field(default="", kw_only=True)  # the file it was read from, for messages

    @model_validator(mode="after")
    def _cost_or_task(self) -> WorkloadSpec:
        """A file describes synthetic work ([cost]) or the user's ([task]): the keys each needs."""
        items = self.items
        if self.task is None:
            if self.cost is None:
                raise Problem(("cost",), None, "a [cost] table (synthetic work) or a [task] table (your function)",
                              found="neither")
            if items.count is None:
                raise Problem(("items", "count"), None, f"an integer from 1 to {MAX_ITEMS:_} ([cost] needs it)",
                              found=MISSING_KEY)
            for key in ("source", "path"):
                if getattr(items, key):
                    raise Problem(("items", key), getattr(items, key), "no such key with [cost] (synthetic items "
                                  "are generated; [items] source and path go with a [task] table)")
            return self
        if self.cost is not None:
            raise Problem(("task",), "[task]", "either [cost] (synthetic work) or [task] (your function), not both",
                          found="both [cost] and [task]")
        if bool(items.source) == bool(items.path) and self.source != BENCHMARK_SOURCE:
            raise Problem(("items", "source"), items.source or None,
                          'exactly one of [items] source = "module:attribute" or path = "file.csv" with [task]',
                          found="both source and path" if items.source else "neither source nor path")
        if items.payload_bytes:
            raise Problem(("items", "payload_bytes"), items.payload_bytes,
                          "0 with [task] (your items are your own; payload_bytes sizes synthetic ones)")
        for key in ("transient_rate", "permanent_rate"):
            if getattr(self.faults, key):
                raise Problem(("faults", key), getattr(self.faults, key), "0 with [task] (faults are injected "
                              "into synthetic items only; your function's own exceptions are its failures)")
        if self.pattern.kind not in USER_TASK_PATTERNS:
            raise Problem(("pattern",), self.pattern.kind, found=f"kind {self.pattern.kind!r}", expected=
                          f"kind one of {', '.join(map(repr, USER_TASK_PATTERNS))} with [task] (the other patterns "
                          "shape synthetic items: costs, groups, routes)")
        return self


# --- public API ---------------------------------------------------------------------------


# A workload file is a few dozen lines (the largest bundled one is under 2 KiB); anything over
# this is not one, and `harness run /dev/zero` must be refused before it is read whole.
MAX_WORKLOAD_FILE_BYTES = 1024 * 1024


def load_spec(path: str | os.PathLike[str]) -> WorkloadSpec:
    """Read, parse and validate the workload file at `path` (a regular file of at most
    MAX_WORKLOAD_FILE_BYTES, checked before reading it)."""
    source = str(path)
    try:  # stat first: opening a FIFO would block, reading /dev/zero would never end
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):
            kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a device, pipe or socket"
            raise SpecError(f"{source}: cannot read the workload file: found {kind}, expected a regular TOML file")
        if info.st_size > MAX_WORKLOAD_FILE_BYTES:
            raise SpecError(f"{source}: found {info.st_size:,} bytes, expected a workload TOML file of at most "
                            f"{MAX_WORKLOAD_FILE_BYTES:,} bytes")
        with open(path, "rb") as f:
            data = f.read(MAX_WORKLOAD_FILE_BYTES + 1)
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
    if "source" in doc:  # a field of the spec, not a key of the file
        raise _unknown_key(f"{source}: [top level] source", "key", "source", _file_keys(WorkloadSpec))
    # A missing table reads as an empty one, so the message names its first required key ([cost]
    # only when the file has no [task]: a file has one or the other).
    doc = {**{name: {} for name in ("items",) + (() if "task" in doc else ("cost",))}, **doc}
    try:
        spec = WorkloadSpec(**doc, source=source)
    except ValidationError as exc:
        raise SpecError(_explain(exc, WorkloadSpec, doc, source)) from None
    if spec.cluster.security is not None:
        security = _existing_files(spec.cluster.security, source, f"{source}: [cluster] security.")
        spec = dataclasses.replace(spec, cluster=dataclasses.replace(spec.cluster, security=security))
    return spec


def load_security(path: str | os.PathLike[str]) -> SecuritySpec:
    """The --dask-security file: TOML with the keys of `[cluster] security` (ca_file, cert, key),
    relative paths read from the file's folder; each file must exist."""
    source = str(path)
    try:
        doc = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SpecError(f"--dask-security: {source}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"--dask-security: {source}: cannot read it: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(f"--dask-security: {source}: invalid TOML: {exc}") from None
    try:
        security = SecuritySpec(**doc)
    except ValidationError as exc:
        raise SpecError(_explain(exc, SecuritySpec, doc, f"--dask-security {source}")) from None
    return _existing_files(security, source, f"--dask-security {source}: ")


def _existing_files(security: SecuritySpec, source: str, where: str) -> SecuritySpec:
    """`security` with each path made absolute (relative ones from `source`'s folder); a SpecError
    naming the first key whose file does not exist."""
    base = Path(source).resolve().parent if Path(source).is_file() else Path.cwd()
    resolved = {}
    for key in ("ca_file", "cert", "key"):
        written = getattr(security, key)
        path = (base / Path(written).expanduser()).resolve()
        if not path.is_file():
            raise SpecError(f"{where}{key}: found {written!r} (no such file: {path}), expected "
                            f"{_expected(_PEM_PATH)}")
        resolved[key] = str(path)
    return SecuritySpec(**resolved)


def parse_strategy(text: str, where: str) -> Strategy:
    """Parse one strategy name ("per_item", "static:64", ...); `where` names its origin in messages."""
    try:
        return _parse_strategy(text)
    except Problem as problem:
        raise SpecError(f"{where}: found {problem.found or _found(problem.value)}, expected {problem.expected}") from None


def with_overrides(
    spec: WorkloadSpec,
    *,
    strategies: str | None = None,
    repeats: int | str | None = None,
    budget_s: float | None = None,
    address: str | None = None,
    quick: bool = False,
    security: SecuritySpec | None = None,
) -> WorkloadSpec:
    """Apply the command line's overrides; `strategies` is the comma-separated --strategies text.

    `quick` means one repeat and no sweep; it wins over `repeats`. `security` (from
    load_security, --dask-security) replaces `[cluster] security`.
    """
    run = _override(spec.run, "--strategies", strategies=strategies.split(",") if isinstance(strategies, str)
                    else strategies)
    run = _override(run, "--repeats", repeats=repeats)
    run = _override(run, "--budget", budget_s=float(budget_s) if isinstance(budget_s, int) else budget_s)
    if quick:
        run = dataclasses.replace(run, repeats=1, sweep=())
    cluster = _override(spec.cluster, "--dask-address", address=address)
    cluster = _override(cluster, "--dask-security", security=security)
    return dataclasses.replace(spec, run=run, cluster=cluster)


def _override(table: Any, option: str, **changes: Any) -> Any:
    changes = {key: value for key, value in changes.items() if value is not None}
    if not changes:
        return table
    try:
        return dataclasses.replace(table, **changes)
    except ValidationError as exc:
        raise SpecError(_explain(exc, type(table), changes, "", option=option)) from None


def strategies_to_run(spec: WorkloadSpec) -> tuple[Strategy, ...]:
    """`[run] strategies`, then `static:N` for each N of `[run] sweep`; no duplicates, order kept."""
    sweep = (Strategy("static", n) for n in spec.run.sweep)
    return tuple(dict.fromkeys((*spec.run.strategies, *sweep)))


def json_schema() -> str:
    """The workload file's JSON Schema, for editors' TOML support (README "Workload files")."""
    schema = TypeAdapter(WorkloadSpec).json_schema()
    for kind, options in PATTERN_OPTIONS.items():  # only "map" may leave out its kind
        if kind != "map":
            schema["$defs"][options.__name__]["required"] = ["kind"]
    schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema,
              "title": "harness workload file", "description": __doc__.split("\n")[0]}
    return json.dumps(schema, indent=2)


# --- messages -----------------------------------------------------------------------------

_TOML_TYPES = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"), (list, "array"),
               (tuple, "array"))
# pydantic error types that mean "a value of the wrong type" (the found value's type is shown).
_TYPE_ERRORS = {"literal_error", "int_from_float"}  # and every "..._type"


def _found(value: Any, typed: bool = False) -> str:
    """`value` as a message shows it; numbers get their type only when `typed` (a type mismatch)."""
    if isinstance(value, dict):
        return "a table"
    kind = next((name for t, name in _TOML_TYPES if isinstance(value, t)), type(value).__name__)
    if isinstance(value, bool):
        text = "true" if value else "false"
    else:
        text = repr(list(value) if isinstance(value, tuple) else value)
        text = text if len(text) <= 60 else text[:57] + "..."
    return f"{text} ({kind})" if typed or kind not in ("integer", "float") else text


def _did_you_mean(word: str, options: typing.Iterable[str], template: str) -> str:
    """`template` filled with the option closest to `word`, or "" when none is close."""
    close = difflib.get_close_matches(word, list(options), n=1)
    return template.format(repr(close[0])) if close else ""


def _unknown_key(where: str, noun: str, name: str, allowed: list[str], only: str = "") -> SpecError:
    if only:
        return SpecError(f"{where}: unknown {noun}, expected only: {only}")
    hint = _did_you_mean(name, allowed, " (did you mean {}?)")
    return SpecError(f"{where}: unknown {noun}{hint}, expected one of: {', '.join(allowed)}")


def _unwrap(tp: Any) -> tuple[Any, list[Any]]:
    """A type without its Annotated wrapper (nor `| None`), and the metadata it carried."""
    meta: list[Any] = []
    while True:
        if typing.get_origin(tp) is Annotated:
            meta = [*tp.__metadata__, *meta]
            tp = tp.__origin__
        elif typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in typing.get_args(tp):
            tp = next(a for a in typing.get_args(tp) if a is not type(None))
        else:
            return tp, meta


def _expected(tp: Any, meta: list[Any] = ()) -> str:
    meta = [*_unwrap(tp)[1], *meta]
    return next((m.text for m in reversed(meta) if isinstance(m, Expected)), "")


def _is_table(tp: Any) -> bool:
    tp = _unwrap(tp)[0]
    return dataclasses.is_dataclass(tp) or typing.get_origin(tp) is typing.Union


def _fields(model: type) -> dict[str, Any]:
    """The model's keys (name -> pydantic FieldInfo), in declaration order."""
    return {name: info for name, info in model.__pydantic_fields__.items()
            if not any(isinstance(m, SkipJsonSchema) for m in info.metadata)}


# The tables of the file, in the order messages list them.
_TABLES = tuple(key for key, info in _fields(WorkloadSpec).items() if _is_table(info.annotation))


def _file_keys(model: type) -> list[str]:
    """The keys a table of `model` may hold, as messages list them (tables of the file as [name])."""
    if model is WorkloadSpec:
        return [k for k in _fields(model) if k not in _TABLES] + [f"[{t}]" for t in _TABLES]
    return list(_fields(model))


@dataclasses.dataclass
class _Place:
    """Where an error is, walked along its pydantic `loc` through the models and the input."""

    table: str = "[top level]"
    key: str = ""
    tp: Any = None  # the type expected here
    meta: list[Any] = dataclasses.field(default_factory=list)
    model: Any = None  # the model whose key this is
    kind: str = ""  # the pattern kind, inside [pattern]
    raw: Any = None  # the input found here (_ABSENT when not given)
    parent: Any = None  # the type one step up
    order: list[tuple[int, int]] = dataclasses.field(default_factory=list)  # for picking the first error

    def __str__(self) -> str:
        return f"{self.table} {self.key}".rstrip()


_ABSENT = object()


def _walk(root: type, raw: Any, loc: tuple[Any, ...]) -> _Place:
    place = _Place(tp=root, raw=raw)
    for step in loc:
        if step == "[key]":  # pydantic's mark of a table's key (not its value) at fault
            place.tp, place.meta = typing.get_args(_unwrap(place.parent)[0])[0], []
            continue
        tp = _unwrap(place.tp)[0]
        place.parent = place.tp
        position = list(place.raw).index(step) if isinstance(place.raw, dict) and step in place.raw else 0
        if typing.get_origin(tp) is typing.Union:  # the pattern union: `step` is its tag
            place.tp, place.kind = PATTERN_OPTIONS[step], step
            continue
        if dataclasses.is_dataclass(tp):
            fields = _fields(tp)
            place.model = tp
            if step not in fields:
                place.key, place.tp = str(step), None
                place.order.append((0, position))
            else:
                info = fields[step]
                if tp is root and _is_table(info.annotation):
                    place.table = f"[{step}]"
                else:
                    place.key = f"{place.key}.{step}" if place.key else str(step)
                place.tp, place.meta, place.kind = info.annotation, list(info.metadata), ""
                place.order.append((1, list(fields).index(step)))
        elif typing.get_origin(tp) is tuple and isinstance(step, int):
            item = typing.get_args(tp)[0]
            if _is_table(item):
                place.table, place.key = f"[[{place.table.strip('[]')}.{place.key}]] #{step + 1}", ""
            else:
                place.key += f" #{step + 1}"
            place.tp, place.meta = item, []
            place.order.append((1, step))
        elif typing.get_origin(tp) is dict:
            place.key += f".{step}"
            place.tp, place.meta = typing.get_args(tp)[1], []
            place.order.append((1, position))
        if isinstance(place.raw, dict):
            place.raw = place.raw.get(step, _ABSENT)
        elif isinstance(place.raw, (list, tuple)) and isinstance(step, int) and step < len(place.raw):
            place.raw = place.raw[step]
        else:
            place.raw = _ABSENT
    return place


def _message(error: dict[str, Any], root: type, raw: Any, source: str, option: str) -> tuple[list, str]:
    """(sort key, message) of one pydantic error."""
    problem = error.get("ctx", {}).get("error")
    problem = problem if isinstance(problem, Problem) else None
    place = _walk(root, raw, tuple(error["loc"]) + (problem.at if problem else ()))
    where = option or f"{source}: {place}"
    kind = error["type"]
    if problem is not None:
        if problem.found == MISSING_KEY:
            return place.order, f"{where}: missing (a required key), expected {problem.expected}"
        if problem.if_missing and place.raw is _ABSENT:
            return place.order, (f"{where}: missing, expected {problem.expected}; {problem.if_missing} "
                                 f"(the default {problem.value!r} is not valid there)")
        return place.order, f"{where}: found {problem.found or _found(problem.value)}, expected {problem.expected}"
    if kind == "unexpected_keyword_argument":
        if place.model is WorkloadSpec and isinstance(error["input"], dict):
            allowed = [f"[{t}]" for t in _TABLES]
            return place.order, str(_unknown_key(f"{source}: [{place.key}]", "table", f"[{place.key}]", allowed))
        if place.kind:
            keys = list(_fields(place.model))
            only = "" if len(keys) > 1 else (f"kind (pattern-specific keys belong to the kinds "
                                             f"{', '.join(k for k in PATTERN_KINDS if k != place.kind)})")
            return place.order, str(_unknown_key(where, f"key for kind {place.kind!r}", place.key, keys, only))
        return place.order, str(_unknown_key(where, "key", place.key, _file_keys(place.model)))
    if kind == "missing":
        return place.order, f"{where}: missing (a required key), expected {_expected(place.tp, place.meta)}"
    if kind in ("union_tag_invalid", "union_tag_not_found") and isinstance(error["input"], dict):
        found = _found(error["input"].get("kind"), typed=True)
        return place.order, f"{where} kind: found {found}, expected {_expected(place.tp, place.meta)}"
    if kind in ("dataclass_type", "dataclass_exact_type", "union_tag_not_found") or (
            _is_table(place.tp) and kind.endswith("_type")):
        if place.table.startswith("[["):  # an entry of an array of tables
            *rest, last = _file_keys(_unwrap(place.tp)[0])
            expected = f"a table with keys {', '.join(rest)} and {last}" if rest else f"a table with key {last}"
            order = place.order
        else:  # a table of the file given as a value: said before anything inside the tables
            expected, order = f"a table ({place.table} followed by its keys)", [(0, 0)]
        return order, f"{where}: found {_found(error['input'], True)}, expected {expected}"
    typed = kind in _TYPE_ERRORS or kind.endswith("_type")
    expected = _expected(place.tp, place.meta) or error["msg"]
    if kind == "too_long":
        expected = f"at most {error['ctx']['max_length']} entries"
    return place.order, f"{where}: found {_found(error['input'], typed)}, expected {expected}"


def _explain(exc: ValidationError, root: type, raw: Any, source: str, option: str = "") -> str:
    """The message of the first of pydantic's errors, in the order a reader meets them in the file."""
    messages = [_message(error, root, raw, source, option) for error in exc.errors()]
    # An error inside a value comes before one about the whole value (pydantic reports a tuple
    # with a bad entry as too short as well).
    return min(messages, key=lambda m: [*m[0], (2, 0)])[1]
