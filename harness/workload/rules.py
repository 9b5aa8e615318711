"""The vocabulary the workload file's models (harness.workload.spec, harness.workload.pattern_options) are written in.

A rule is a typed, constrained annotation plus the "expected ..." text its messages show,
built from the same bounds, so the check and its wording cannot drift apart. Rules that span
several keys raise `Problem` from a model validator; harness.workload.spec turns every failure into
one message (file, table, key, found, expected).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, Strict, StringConstraints
from pydantic.dataclasses import dataclass as _pydantic_dataclass

# Unknown keys are errors; NaN and infinity are never a valid number here. Strict types are set
# per rule (below), not here: TOML arrays arrive as lists and tables as dicts, which strict mode
# would refuse for tuples and nested models.
SPEC_CONFIG = ConfigDict(extra="forbid", allow_inf_nan=False)


def spec_model(cls: type) -> type:
    """A frozen, validating dataclass that rejects unknown keys: a table of the workload file."""
    return _pydantic_dataclass(frozen=True, config=SPEC_CONFIG)(cls)


@dataclasses.dataclass(frozen=True)
class Expected:
    """Annotation metadata: what a message says is expected for this value."""

    text: str


class Problem(ValueError):
    """A broken rule found by a validator: `at` continues the location from where it is raised
    (keys and 0-based array indices), `found` is the text shown for what was found (default:
    `value` shown as messages show values); `if_missing` is said instead when the key at `at`
    was absent from the file and its default broke the rule."""

    def __init__(self, at: tuple[str | int, ...], value: Any, expected: str, *, found: str | None = None,
                 if_missing: str = "") -> None:
        super().__init__(f"{'.'.join(map(str, at))}: found {found or value!r}, expected {expected}")
        self.at, self.value, self.expected, self.found, self.if_missing = at, value, expected, found, if_missing


def _note(note: str) -> str:
    return f" ({note})" if note else ""


def _show(x: float) -> str:
    return f"{x:_}" if isinstance(x, int) else repr(x)


def integer(lo: int, hi: int | None = None, *, note: str = "") -> Any:
    span = f">= {lo:_}" if hi is None else f"from {lo:_} to {hi:_}"
    return Annotated[int, Strict(), Field(ge=lo, le=hi), Expected(f"an integer {span}{_note(note)}")]


def number(lo: float, hi: float | None = None, *, lo_open: bool = True, hi_open: bool = False,
           note: str = "") -> Any:
    span = f"{'>' if lo_open else '>='} {_show(lo)}"
    if hi is not None:
        span += f" and {'<' if hi_open else '<='} {_show(hi)}"
    bounds = {"gt" if lo_open else "ge": lo, **({} if hi is None else {"lt" if hi_open else "le": hi})}
    return Annotated[float, Strict(), Field(**bounds), Expected(f"a number {span}{_note(note)}")]


def choice(options: tuple[str, ...]) -> Any:
    return Annotated[Literal[options], Expected(f"one of {', '.join(map(repr, options))}")]


def matching(regex: str, expected: str) -> Any:
    """A string the whole of which matches `regex`."""
    return Annotated[str, Strict(), StringConstraints(pattern=f"^(?:{regex})$"), Expected(expected)]


TEXT = Annotated[str, Strict(), Expected("a string")]


def distinct(noun: str, show: Callable[[Any], str] = repr) -> AfterValidator:
    """An array whose entries each appear at most once."""

    def check(values: tuple[Any, ...]) -> tuple[Any, ...]:
        seen: list[Any] = []
        for value in values:
            if value in seen:
                raise Problem((), value, f"each {noun} at most once", found=f"{show(value)} twice")
            seen.append(value)
        return values

    return AfterValidator(check)


def names_from(known: Iterable[str], expected: str) -> Callable[[Any], tuple[str, ...]]:
    """A validator for an array of distinct names from `known`, reported as one key."""
    known = tuple(known)

    def check(values: Any) -> tuple[str, ...]:
        if not isinstance(values, (list, tuple)) or len(set(map(str, values))) != len(values):
            raise Problem((), values, expected)
        for value in values:
            if value not in known:
                raise Problem((), value, expected)
        return tuple(values)

    return check
