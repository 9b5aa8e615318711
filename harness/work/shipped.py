"""A user's function carried to the workers by value (cloudpickle), for the pytest plugin's
`harness_benchmark` (harness.api.pytest_plugin).

A workload file's `[task]` and `harness.benchmark` name their function by reference
(harness.work.user_task.UserFunction): the workers import it. A test's function cannot be
named that way: it may be a lambda or a closure, and its module is a test file the workers
(of a cluster started elsewhere, or with another sys.path) cannot import. `ship` pickles it
with cloudpickle, its own module by value (the module-level helpers and constants it uses
travel with it; the packages it imports travel by name and must be importable on the
workers), once, in the flow process; each worker process unpickles it once (cached by the
digest of its bytes) and runs it as UserFunction runs a function: timed per call, an
exception becoming a failed outcome.

This module imports neither Prefect nor Dask (it runs on workers and in the flow process).
"""

from __future__ import annotations

import hashlib
import inspect
import sys
import sysconfig
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import SpecError
from harness.work.outcomes import BatchResult, ItemOutcome
from harness.work.user_task import UserFunction

_unpickled: dict[bytes, Callable[[Any], Any]] = {}
_unpickled_lock = threading.Lock()


@dataclass(frozen=True)
class ShippedFunction:
    """A Kernel (harness.work.kernels.Kernel): `fn` per item, carried as its cloudpickle bytes."""

    pickled: bytes = field(repr=False)
    name: str  # the function's name, for messages
    retries: int = 0  # attempts after the first for a call that raises

    def function(self) -> Callable[[Any], Any]:
        key = hashlib.blake2b(self.pickled, digest_size=16).digest()
        with _unpickled_lock:
            fn = _unpickled.get(key)
            if fn is None:
                import cloudpickle

                fn = _unpickled[key] = cloudpickle.loads(self.pickled)
            return fn

    def run_item(self, item: Any, attempt: int = 1) -> ItemOutcome:
        return UserFunction._call(self.function(), item, self.retries)

    def run_batch(self, items: Sequence[Any], retries: int) -> BatchResult:
        import time

        started = time.time()
        fn = self.function()
        outcomes = tuple(UserFunction._call(fn, item, retries) for item in items)
        return BatchResult(outcomes, sum(o.compute_s for o in outcomes), started, time.time())


def describe(fn: Any) -> str:
    """'score (test_scoring.py:12)': a function as a message names it."""
    name = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", None) or repr(fn)
    try:
        file = inspect.getsourcefile(fn)
        line = inspect.getsourcelines(fn)[1]
    except (TypeError, OSError):
        return name
    return f"{name} ({Path(file).name}:{line})" if file else name


def _installed(module_name: str) -> bool:
    """Whether a module comes with Python or an installed distribution (site-packages): the
    workers import it by name; any other module (a test file, a script) travels by value."""
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if module_name == "__main__" or module is None:
        return False
    if not file:
        return True  # built in
    paths = sysconfig.get_paths()
    roots = {Path(paths[key]).resolve() for key in ("stdlib", "platstdlib", "purelib", "platlib")}
    return any(root in Path(file).resolve().parents for root in roots)


def _culprit(fn: Any) -> str:
    """What in `fn`'s closure or globals does not pickle: "its closure variable 'lock' (a
    _thread.lock)", or "" when none of them alone is it."""
    import cloudpickle

    try:
        found = inspect.getclosurevars(fn)
    except TypeError:  # not a Python function (a callable object, a builtin)
        return ""
    for kind, names in (("closure variable", found.nonlocals), ("global", found.globals)):
        for name, value in names.items():
            if inspect.ismodule(value):
                continue
            try:
                cloudpickle.dumps(value)
            except Exception:  # noqa: BLE001 - whatever pickling raises names the culprit
                return f"its {kind} {name!r} (a {type(value).__module__}.{type(value).__qualname__})"
    return ""


def ship(fn: Any, what: str, retries: int = 0) -> ShippedFunction:
    """`fn` as a ShippedFunction, its module by value unless installed; SpecError naming `fn`
    and what it holds that cannot travel to the workers (a lock, a file, a connection)."""
    if not callable(fn):
        raise SpecError(f"{what}: found a {type(fn).__name__}, expected a function of one item")
    import cloudpickle

    module_name = getattr(fn, "__module__", None) or ""
    by_value = bool(module_name) and not _installed(module_name) and module_name in sys.modules
    registered = by_value and module_name not in cloudpickle.list_registry_pickle_by_value()
    if registered:
        cloudpickle.register_pickle_by_value(sys.modules[module_name])
    try:
        pickled = cloudpickle.dumps(fn)
    except Exception as exc:  # noqa: BLE001 - any pickling failure is the user's to fix
        culprit = _culprit(fn)
        held = f": {culprit} does not pickle" if culprit else ""
        raise SpecError(
            f"{what}: {describe(fn)} cannot travel to the worker processes{held} "
            f"({type(exc).__name__}: {exc}); expected a function that pickles with cloudpickle: create locks, "
            f"open files and connections inside it (or on first use in the worker), not around it") from None
    finally:
        if registered:
            cloudpickle.unregister_pickle_by_value(sys.modules[module_name])
    return ShippedFunction(pickled, describe(fn), retries)
