"""`[pattern]`: one options model per pattern kind, told apart by `kind` (a tagged union).

Adding a pattern kind: its options model here (a `kind` literal and its keys) and one entry in
`PATTERN_OPTIONS`; its flow is a module of harness.patterns (README "Extending: a new pattern").

Cost factors multiply an item's own cost (`[cost]`): a route, type or step with factor 2.0
does twice the item's work.
"""

from __future__ import annotations

import dataclasses
import graphlib
import re
from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BeforeValidator, Discriminator, Field, PlainValidator, Tag, WithJsonSchema, model_validator
from pydantic.json_schema import SkipJsonSchema

from harness.workload.vocabulary import PATTERN_KINDS
from harness.workload.rules import Expected, Problem, choice, distinct, integer, matching, names_from, number, spec_model

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
MAX_NAMED = 32  # routes, flags, types, steps, schema fields

_NAME_REGEX = r"[a-z][a-z0-9_]*"


def _name_expected(noun: str) -> str:
    return f"a {noun} name of lower-case letters, digits and '_' starting with a letter ({_NAME_REGEX})"


def _name(noun: str) -> Any:
    return matching(_NAME_REGEX, _name_expected(noun))


_STEP_NAME_EXPECTED = _name_expected("step")


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _named_numbers(names: tuple[str, ...] | None, value: Any, *, what: str, shares: bool, required: bool) -> Any:
    """A table of name = number, kept as (name, number) pairs in the file's order: shares
    (summing to 1) or cost factors; `required`: every one of `names` must be given."""
    rule = "shares >= 0 summing to 1" if shares else "cost factors > 0"
    scope = f" with keys {', '.join(names)}" if names else ""
    expected = f"a table of {what}{scope}: {rule}"

    def check(table: dict[str, float]) -> tuple[tuple[str, float], ...]:
        missing = [n for n in names or () if n not in table]
        if required and missing:
            raise Problem((), table, f"{expected} (missing {', '.join(missing)})", found=_show(table))
        if shares and abs(sum(table.values()) - 1.0) > SHARE_SUM_TOLERANCE:
            raise Problem((), table, f"{expected} (they sum to {sum(table.values()):g})", found=_show(table))
        return tuple(table.items())

    key_type = choice(names) if names else _name("type")
    return Annotated[dict[key_type, value], _AS_TABLE, Field(min_length=1 if shares or required else 0,
                     max_length=MAX_NAMED), AfterValidator(check), Expected(expected)]


# Tables kept as (name, number) pairs are read back as tables when an instance is rebuilt.
_AS_TABLE = BeforeValidator(lambda v: dict(v) if isinstance(v, tuple) else v)


_SHARE = number(0, lo_open=False)
_FACTOR = number(0, 1000)  # a single cost factor
_TABLE_FACTOR = number(0)  # a cost factor in a table of them (unbounded, as they always were)


@spec_model
class MapOptions:
    """The flat map: no options of its own."""

    kind: Literal["map"] = "map"


@spec_model
class NestedMapOptions:
    kind: Literal["nested_map"] = "nested_map"
    groups: integer(1, MAX_GROUPS) = 8  # services discovered at run time; items are their endpoints
    group_spread: number(0, 4, lo_open=False) = 1.0  # lognormal sigma of the group sizes (0: equal groups)


@spec_model
class BranchingOptions:
    kind: Literal["branching"] = "branching"
    shares: _named_numbers(tuple(QUALITY_ROUTES), _SHARE, what="quality shares", shares=True,
                           required=True) = (("high", 0.6), ("medium", 0.3), ("low", 0.1))
    costs: _named_numbers(tuple(QUALITY_ROUTES.values()), _TABLE_FACTOR, what="route costs", shares=False,
                          required=True) = (("fast", 0.5), ("standard", 1.0), ("remediation", 3.0))
    review_share: number(0, 1, lo_open=False) = 0.25  # second decision point: share of non-fast items sent to review
    review_cost: _FACTOR = 1.0
    # feature flag -> share of items that have it on
    flags: Annotated[dict[_name("feature flag"), number(0, 1, lo_open=False, note="a share of items")],
                     _AS_TABLE, Field(max_length=MAX_NAMED), AfterValidator(lambda t: tuple(t.items())),
                     Expected("a table of feature flag = share of items (0..1)")] = ()
    flag_cost: _FACTOR = 0.5  # cost factor of each flag's optional step


@spec_model
class SubflowsOptions:
    kind: Literal["subflows"] = "subflows"
    types: _named_numbers(None, _SHARE, what="item types", shares=True,
                          required=False) = (("csv", 0.5), ("json", 0.3), ("xml", 0.2))
    # Absent: the default cost of each declared type that has one (others cost 1.0).
    costs: _named_numbers(None, _TABLE_FACTOR, what="type costs", shares=False, required=False) | None = None
    load_cost: _FACTOR = 0.5  # the reusable load subflow every type's pipeline ends with

    @model_validator(mode="after")
    def _costs_of_declared_types(self) -> SubflowsOptions:
        names = [n for n, _ in self.types]
        if self.costs is None:
            object.__setattr__(self, "costs", tuple(c for c in _DEFAULT_TYPE_COSTS if c[0] in names))
        for name, _ in self.costs:
            if name not in names:
                raise Problem(("costs", name), name, f"one of {', '.join(names)}")
        return self

    def cost(self, kind: str) -> float:
        return dict(self.costs).get(kind, 1.0)


_DEFAULT_TYPE_COSTS = (("csv", 1.0), ("json", 1.5), ("xml", 2.0))


@spec_model
class Step:
    name: Annotated[str, Expected("a step name")]  # declared names: _check_declared
    cost: _FACTOR = 1.0
    depends_on: Annotated[tuple[Annotated[str, Expected("a step name")], ...], distinct("dependency"),
                          Expected("an array of distinct step names")] = ()


def _operations(known: dict[str, float]) -> Any:
    expected = f"an array of distinct names from: {', '.join(known)}"
    schema = {"type": "array", "items": {"enum": list(known)}, "uniqueItems": True}
    return Annotated[tuple[str, ...], PlainValidator(names_from(known, expected)), WithJsonSchema(schema)]


@spec_model
class SchemaField:
    """A field of a schema-driven pipeline: a chain of its validations, then its transformations."""

    name: _name("field")
    validations: _operations(VALIDATIONS) = ()
    transformations: _operations(TRANSFORMATIONS) = ()

    @model_validator(mode="after")
    def _some_work(self) -> SchemaField:
        if not self.validations and not self.transformations:
            raise Problem(("validations",), None, "at least one",
                          found=f"no validations or transformations for field {self.name!r}")
        return self


def _tables(key: str, what: str, item: type) -> Any:
    return Annotated[tuple[item, ...], Field(min_length=1, max_length=MAX_NAMED),
                     Expected(f"a non-empty array of tables ([[pattern.{key}]]) of {what}")]


@spec_model
class PipelineOptions:
    """Declared `steps`, or steps built from a `schema`: either way `steps` holds them after
    validation, `order` one valid execution order, `built_from` which it was."""

    kind: Literal["pipeline"] = "pipeline"
    steps: _tables("steps", "name, cost, depends_on", Step) | None = None
    schema: _tables("schema", "name, validations, transformations", SchemaField) | None = None
    built_from: SkipJsonSchema[str] = dataclasses.field(init=False, default="steps")
    order: SkipJsonSchema[tuple[str, ...]] = dataclasses.field(init=False, default=())

    @model_validator(mode="after")
    def _resolve(self) -> PipelineOptions:
        if self.order:  # resolved already: pydantic re-runs this on an instance (dataclasses.replace)
            return self
        if (self.steps is None) == (self.schema is None):
            found = "both" if self.steps is not None else "neither"
            raise Problem(("steps",), None, "exactly one: [[pattern.steps]] (name, cost, depends_on) or "
                          "[[pattern.schema]] (name, validations, transformations)",
                          found=f"{found} of steps and schema")
        if self.steps is not None:
            _check_declared(self.steps)
            built_from = "steps"
        else:
            object.__setattr__(self, "steps", _steps_from_schema(self.schema))
            built_from = "schema"
        sorter = graphlib.TopologicalSorter({s.name: s.depends_on for s in self.steps})
        try:
            order = tuple(sorter.static_order())
        except graphlib.CycleError as exc:
            raise Problem((built_from,), None, "depends_on that form no cycle",
                          found=f"a dependency cycle {' -> '.join(exc.args[1])}") from None
        object.__setattr__(self, "built_from", built_from)
        object.__setattr__(self, "order", order)
        return self

    @property
    def counted(self) -> str:
        """The step whose outcomes count each item once (every item passes every step)."""
        return self.order[-1]


def _check_declared(steps: tuple[Step, ...]) -> None:
    """Declared step names follow the name rule (steps built from a schema are "field.op")."""
    names: list[str] = []
    for i, step in enumerate(steps):
        if not re.fullmatch(_NAME_REGEX, step.name):
            raise Problem(("steps", i, "name"), step.name, _STEP_NAME_EXPECTED)
        if step.name in names:
            raise Problem(("steps", i, "name"), step.name, "each step name at most once")
        names.append(step.name)
    for i, step in enumerate(steps):
        for dep in step.depends_on:
            if dep not in names:
                raise Problem(("steps", i, "depends_on"), dep, f"names of declared steps: {', '.join(names)}",
                              found=f"{dep!r} (step {step.name!r} depends on a step that does not exist)")


def _steps_from_schema(fields: tuple[SchemaField, ...]) -> tuple[Step, ...]:
    """Each field becomes a chain of steps: its validations, then its transformations; fields
    are independent of each other, so their chains run concurrently."""
    steps: list[Step] = []
    seen: list[str] = []
    for i, entry in enumerate(fields):
        if entry.name in seen:
            raise Problem(("schema", i, "name"), entry.name, "each field name at most once")
        seen.append(entry.name)
        previous: tuple[str, ...] = ()
        ops = [(op, VALIDATIONS[op]) for op in entry.validations]
        ops += [(op, TRANSFORMATIONS[op]) for op in entry.transformations]
        for op, cost in ops:
            steps.append(Step(f"{entry.name}.{op}", cost, previous))
            previous = (steps[-1].name,)
    return tuple(steps)


# The registry of pattern kinds, by `kind`: one line each.
PATTERN_OPTIONS: dict[str, type] = {
    "map": MapOptions,
    "nested_map": NestedMapOptions,
    "branching": BranchingOptions,
    "subflows": SubflowsOptions,
    "pipeline": PipelineOptions,
}
assert tuple(PATTERN_OPTIONS) == PATTERN_KINDS, "a pattern kind needs its options model here and its name in the vocabulary"


def _kind(value: Any) -> Any:
    """The tag of a `[pattern]` table: its `kind`, "map" when the table leaves it out."""
    return value.get("kind", "map") if isinstance(value, dict) else getattr(value, "kind", None)


# The `[pattern]` table: a tagged union on `kind`.
PatternSpec = Annotated[Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in PATTERN_OPTIONS.items())],
                        Discriminator(_kind), Expected(f"one of {', '.join(map(repr, PATTERN_KINDS))}")]


def pattern_options(spec: Any) -> Any:
    """The typed options of a workload's pattern: its `[pattern]` table, read with the file."""
    return spec.pattern
