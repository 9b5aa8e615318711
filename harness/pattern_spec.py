"""The `[pattern]` options of the dynamic-workflow kinds: raw TOML -> typed, frozen options.

`harness.spec` keeps a pattern's keys as given (`PatternSpec.options`) and calls
`read_pattern_options` to check them when the file is loaded, so a bad option is an exit-2
error before anything runs. Messages follow spec.py's form, e.g.

    workloads/x.toml: [pattern] shares: found {'high': 0.5}, expected a table of shares ...

Cost factors multiply an item's own cost (`[cost]`): a route, type or step with factor 2.0
does twice the item's work.
"""

from __future__ import annotations

import graphlib
import math
import re
from dataclasses import dataclass
from typing import Any

from harness.errors import SpecError

# A branching item's assessed quality decides its route (fast track, standard, remediation).
QUALITY_ROUTES = {"high": "fast", "medium": "standard", "low": "remediation"}

# Schema-driven pipelines: the cost factor of each validation and transformation, relative to
# the item's own cost. Checks and string edits are cheaper than the main work; format checks
# (a regex) and hashing are the dearer ones, as in the Prefect examples these names come from.
VALIDATIONS = {"not_null": 0.1, "email_format": 0.4, "range": 0.2, "unique": 0.3, "regex": 0.4}
TRANSFORMATIONS = {"trim": 0.1, "lowercase": 0.1, "uppercase": 0.1, "round": 0.1, "normalize": 0.3, "hash": 0.5}

# Shares must sum to 1; this much rounding slack lets users write thirds as 0.333.
SHARE_SUM_TOLERANCE = 0.002
# Bounds that keep a run's structure something a person can read in a report.
MAX_GROUPS = 10_000
MAX_NAMED = 32  # routes flags, types, steps, schema fields
_NAME = re.compile(r"[a-z][a-z0-9_]*")


@dataclass(frozen=True)
class NestedMapOptions:
    groups: int = 8  # services discovered at run time; items are their endpoints
    group_spread: float = 1.0  # lognormal sigma of the group sizes (0: equal groups)


@dataclass(frozen=True)
class BranchingOptions:
    shares: tuple[tuple[str, float], ...] = (("high", 0.6), ("medium", 0.3), ("low", 0.1))
    costs: tuple[tuple[str, float], ...] = (("fast", 0.5), ("standard", 1.0), ("remediation", 3.0))
    review_share: float = 0.25  # second decision point: share of non-fast items sent to review
    review_cost: float = 1.0
    flags: tuple[tuple[str, float], ...] = ()  # feature flag -> share of items that have it on
    flag_cost: float = 0.5  # cost factor of each flag's optional step


@dataclass(frozen=True)
class SubflowsOptions:
    types: tuple[tuple[str, float], ...] = (("csv", 0.5), ("json", 0.3), ("xml", 0.2))
    costs: tuple[tuple[str, float], ...] = (("csv", 1.0), ("json", 1.5), ("xml", 2.0))
    load_cost: float = 0.5  # the reusable load subflow every type's pipeline ends with

    def cost(self, kind: str) -> float:
        return dict(self.costs).get(kind, 1.0)


@dataclass(frozen=True)
class Step:
    name: str
    cost: float = 1.0
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class PipelineOptions:
    steps: tuple[Step, ...]
    built_from: str  # "steps" (declared) or "schema" (built from the fields)
    order: tuple[str, ...]  # one valid execution order, decided when the file is read

    @property
    def counted(self) -> str:
        """The step whose outcomes count each item once (every item passes every step)."""
        return self.order[-1]


PatternOptions = NestedMapOptions | BranchingOptions | SubflowsOptions | PipelineOptions


def read_pattern_options(kind: str, raw: dict[str, Any], source: str, table: str = "[pattern]") -> PatternOptions | None:
    """Check the keys of `[pattern]` (without `kind`) for `kind`; None for "map"."""
    reader = _READERS.get(kind)
    return None if reader is None else reader(raw, source, table)


def pattern_options(spec: Any) -> PatternOptions:
    """The typed options of a workload's non-map pattern, as read with the file."""
    settings = spec.pattern.settings
    if settings is None:  # a PatternSpec built in code: fall back to the defaults of its kind
        settings = read_pattern_options(spec.pattern.kind, {}, spec.source or spec.name)
    return settings


# --- checks -------------------------------------------------------------------------------


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(source: str, table: str, key: str, value: Any, expected: str) -> SpecError:
    return SpecError(f"{source}: {table} {key}: found {_show(value)}, expected {expected}")


def _unknown_keys(raw: dict[str, Any], allowed: tuple[str, ...], source: str, table: str, kind: str) -> None:
    for key in raw:
        if key not in allowed:
            raise SpecError(f"{source}: {table} {key}: unknown key for kind {kind!r}, expected one of: "
                            f"kind, {', '.join(allowed)}")


def _number(raw: dict[str, Any], key: str, default: float, source: str, table: str, *,
            lo: float = 0.0, hi: float | None = None, lo_open: bool = True) -> float:
    value = raw.get(key, default)
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if lo_open else value >= lo) and (hi is None or value <= hi)
    if not ok:
        span = f"{'>' if lo_open else '>='} {lo}" + ("" if hi is None else f" and <= {hi}")
        raise _fail(source, table, key, value, f"a number {span}")
    return float(value)


def _name(value: Any, source: str, table: str, key: str, noun: str) -> str:
    if not isinstance(value, str) or not _NAME.fullmatch(value):
        raise _fail(source, table, key, value, f"a {noun} name of lower-case letters, digits and '_' "
                    "starting with a letter ([a-z][a-z0-9_]*)")
    return value


def _named_numbers(raw: dict[str, Any], key: str, default: tuple[tuple[str, float], ...], source: str,
                   table: str, *, what: str, shares: bool, names: tuple[str, ...] | None = None,
                   required_names: bool = False) -> tuple[tuple[str, float], ...]:
    """A table of name = number: shares (>= 0, summing to 1) or cost factors (> 0)."""
    if key not in raw:
        return default
    value = raw[key]
    rule = "shares >= 0 summing to 1" if shares else "cost factors > 0"
    scope = f" with keys {', '.join(names)}" if names else ""
    expected = f"a table of {what}{scope}: {rule}"
    if not isinstance(value, dict) or (not value and not (shares is False and not required_names)):
        raise _fail(source, table, key, value, expected)
    out = []
    for name, number in value.items():
        if names is not None and name not in names:
            raise _fail(source, table, f"{key}.{name}", name, f"one of {', '.join(names)}")
        _name(name, source, table, key, what)
        good = isinstance(number, (int, float)) and not isinstance(number, bool) and math.isfinite(number)
        if not good or (number < 0 if shares else number <= 0):
            raise _fail(source, table, f"{key}.{name}", number, "a number >= 0" if shares else "a number > 0")
        out.append((name, float(number)))
    if required_names and names is not None and len(out) != len(names):
        missing = [n for n in names if n not in value]
        raise _fail(source, table, key, value, f"{expected} (missing {', '.join(missing)})")
    if len(out) > MAX_NAMED:
        raise _fail(source, table, key, value, f"at most {MAX_NAMED} entries")
    if shares and abs(sum(v for _, v in out) - 1.0) > SHARE_SUM_TOLERANCE:
        raise _fail(source, table, key, value, f"{expected} (they sum to {sum(v for _, v in out):g})")
    return tuple(out)


# --- per kind -----------------------------------------------------------------------------


def _read_nested_map(raw: dict[str, Any], source: str, table: str) -> NestedMapOptions:
    _unknown_keys(raw, ("groups", "group_spread"), source, table, "nested_map")
    groups = raw.get("groups", NestedMapOptions.groups)
    if not isinstance(groups, int) or isinstance(groups, bool) or not 1 <= groups <= MAX_GROUPS:
        raise _fail(source, table, "groups", groups, f"an integer from 1 to {MAX_GROUPS:_}")
    spread = _number(raw, "group_spread", NestedMapOptions.group_spread, source, table, lo=0, hi=4, lo_open=False)
    return NestedMapOptions(groups, spread)


def _read_branching(raw: dict[str, Any], source: str, table: str) -> BranchingOptions:
    keys = ("shares", "costs", "review_share", "review_cost", "flags", "flag_cost")
    _unknown_keys(raw, keys, source, table, "branching")
    d = BranchingOptions
    return BranchingOptions(
        shares=_named_numbers(raw, "shares", d.shares, source, table, what="quality shares", shares=True,
                              names=tuple(QUALITY_ROUTES), required_names=True),
        costs=_named_numbers(raw, "costs", d.costs, source, table, what="route costs", shares=False,
                             names=tuple(QUALITY_ROUTES.values()), required_names=True),
        review_share=_number(raw, "review_share", d.review_share, source, table, lo=0, hi=1, lo_open=False),
        review_cost=_number(raw, "review_cost", d.review_cost, source, table, hi=1000),
        flags=_read_flags(raw, source, table),
        flag_cost=_number(raw, "flag_cost", d.flag_cost, source, table, hi=1000),
    )


def _read_flags(raw: dict[str, Any], source: str, table: str) -> tuple[tuple[str, float], ...]:
    value = raw.get("flags", {})
    if not isinstance(value, dict):
        raise _fail(source, table, "flags", value, "a table of feature flag = share of items (0..1)")
    out = []
    for name, share in value.items():
        _name(name, source, table, "flags", "feature flag")
        good = isinstance(share, (int, float)) and not isinstance(share, bool)
        if not good or not 0 <= share <= 1:
            raise _fail(source, table, f"flags.{name}", share, "a share of items from 0 to 1")
        out.append((name, float(share)))
    if len(out) > MAX_NAMED:
        raise _fail(source, table, "flags", value, f"at most {MAX_NAMED} flags")
    return tuple(out)


def _read_subflows(raw: dict[str, Any], source: str, table: str) -> SubflowsOptions:
    _unknown_keys(raw, ("types", "costs", "load_cost"), source, table, "subflows")
    d = SubflowsOptions
    types = _named_numbers(raw, "types", d.types, source, table, what="item types", shares=True)
    names = tuple(n for n, _ in types)
    if "costs" in raw:
        costs = _named_numbers(raw, "costs", (), source, table, what="type costs", shares=False, names=names)
    else:
        costs = tuple(c for c in d.costs if c[0] in names)
    load = _number(raw, "load_cost", d.load_cost, source, table, hi=1000)
    return SubflowsOptions(types, costs, load)


def _read_pipeline(raw: dict[str, Any], source: str, table: str) -> PipelineOptions:
    _unknown_keys(raw, ("steps", "schema"), source, table, "pipeline")
    if ("steps" in raw) == ("schema" in raw):
        found = "both" if raw else "neither"
        raise SpecError(f"{source}: {table} steps: found {found} of steps and schema, expected exactly one: "
                        "[[pattern.steps]] (name, cost, depends_on) or [[pattern.schema]] "
                        "(name, validations, transformations)")
    if "steps" in raw:
        steps, built_from = _read_steps(raw["steps"], source), "steps"
    else:
        steps, built_from = _steps_from_schema(raw["schema"], source), "schema"
    return PipelineOptions(steps, built_from, _execution_order(steps, source, table, built_from))


def _tables(value: Any, source: str, table: str, key: str, what: str) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not value or not all(isinstance(v, dict) for v in value):
        raise _fail(source, table, key, value, f"a non-empty array of tables ([[pattern.{key}]]) of {what}")
    if len(value) > MAX_NAMED:
        raise _fail(source, table, key, f"{len(value)} entries", f"at most {MAX_NAMED}")
    return value


def _read_steps(value: Any, source: str) -> tuple[Step, ...]:
    steps: list[Step] = []
    for i, entry in enumerate(_tables(value, source, "[pattern]", "steps", "name, cost, depends_on"), 1):
        where = f"[[pattern.steps]] #{i}"
        for key in entry:
            if key not in ("name", "cost", "depends_on"):
                raise SpecError(f"{source}: {where} {key}: unknown key, expected one of: name, cost, depends_on")
        if "name" not in entry:
            raise SpecError(f"{source}: {where} name: missing (a required key), expected a step name")
        name = _name(entry["name"], source, where, "name", "step")
        if any(s.name == name for s in steps):
            raise _fail(source, where, "name", name, "each step name at most once")
        deps = entry.get("depends_on", [])
        if not isinstance(deps, list) or not all(isinstance(d, str) for d in deps) or len(set(deps)) != len(deps):
            raise _fail(source, where, "depends_on", deps, "an array of distinct step names")
        cost = _number(entry, "cost", Step.cost, source, where, hi=1000)
        steps.append(Step(name, cost, tuple(deps)))
    names = [s.name for s in steps]
    for i, step in enumerate(steps, 1):
        for dep in step.depends_on:
            if dep not in names:
                raise SpecError(f"{source}: [[pattern.steps]] #{i} depends_on: found {dep!r} (step {step.name!r} "
                                f"depends on a step that does not exist), expected names of declared steps: "
                                f"{', '.join(names)}")
    return tuple(steps)


def _steps_from_schema(value: Any, source: str) -> tuple[Step, ...]:
    """Each field becomes a chain of steps: its validations, then its transformations; fields
    are independent of each other, so their chains run concurrently."""
    steps: list[Step] = []
    fields: list[str] = []
    for i, entry in enumerate(_tables(value, source, "[pattern]", "schema", "name, validations, transformations"), 1):
        where = f"[[pattern.schema]] #{i}"
        for key in entry:
            if key not in ("name", "validations", "transformations"):
                raise SpecError(f"{source}: {where} {key}: unknown key, expected one of: name, validations, "
                                "transformations")
        if "name" not in entry:
            raise SpecError(f"{source}: {where} name: missing (a required key), expected a field name")
        name = _name(entry["name"], source, where, "name", "field")
        if name in fields:
            raise _fail(source, where, "name", name, "each field name at most once")
        fields.append(name)
        ops: list[tuple[str, float]] = []
        for key, known in (("validations", VALIDATIONS), ("transformations", TRANSFORMATIONS)):
            listed = entry.get(key, [])
            expected = f"an array of distinct names from: {', '.join(known)}"
            if not isinstance(listed, list) or len(set(map(str, listed))) != len(listed):
                raise _fail(source, where, key, listed, expected)
            for op in listed:
                if op not in known:
                    raise _fail(source, where, key, op, expected)
                ops.append((op, known[op]))
        if not ops:
            raise SpecError(f"{source}: {where} validations: found no validations or transformations for field "
                            f"{name!r}, expected at least one")
        previous: tuple[str, ...] = ()
        for op, cost in ops:
            step = Step(f"{name}.{op}", cost, previous)
            steps.append(step)
            previous = (step.name,)
    return tuple(steps)


def _execution_order(steps: tuple[Step, ...], source: str, table: str, key: str) -> tuple[str, ...]:
    sorter = graphlib.TopologicalSorter({s.name: s.depends_on for s in steps})
    try:
        return tuple(sorter.static_order())
    except graphlib.CycleError as exc:
        cycle = " -> ".join(exc.args[1])
        raise SpecError(f"{source}: {table} {key}: found a dependency cycle {cycle}, expected depends_on "
                        "that form no cycle") from None


_READERS = {
    "nested_map": _read_nested_map,
    "branching": _read_branching,
    "subflows": _read_subflows,
    "pipeline": _read_pipeline,
}
