"""A user's task: their function and items (`[task]` + `[items]`), run by every strategy in
place of the synthetic kernel (README "Measure your own task").

`UserFunction` is the `Kernel` the tasks run (harness.work.kernels.run_batch dispatches to it):
it holds the function as a "module:attribute" reference and the folder to import it from, so
it pickles as a few strings and each worker process imports the function itself. It times
each call with perf_counter (wall time: user code may wait on I/O or release the GIL), retries
a call that raises, and turns the last exception into a failed outcome: a user's exception
never fails a task, so a run never crashes on one. An `async def` function runs a batch's items
concurrently on an event loop in the task (harness.work.async_items), at most `concurrency` at
once (0: the whole batch, static:N's fixed limit N) and never more than `max_concurrency`
(`[task] max_concurrency`); one item alone (per_item) is one coroutine.

A result never travels back: each ok outcome carries a digest of its result (a hash of its
pickle), which the Tally folds into the run's checksum (harness.work.outcomes.item_digest), so
strategies can be compared on their results at the cost of 16 bytes per item.

Loading (`load_task`) reads at most `[items] count` items, and without a count never more than
the spec's MAX_ITEMS, so an endless source fails with exit 2 instead of filling memory.
`UserTask.digest_parts` is what makes two runs the same work (the function's code, the items'
content), for the workload digest; `digest_differences` says which part differs.

This module imports neither Prefect nor Dask (it runs on workers and in the flow process).
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import io
import itertools
import json
import operator
import pickle
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from harness.errors import SpecError
from harness.work.async_items import is_async_function, run_async_batch
from harness.work.outcomes import BatchResult, ItemOutcome
from harness.work.synthetic import ItemCursor
from harness.workload.spec import MAX_ITEMS

if TYPE_CHECKING:
    from harness.workload.spec import WorkloadSpec

# Bytes of a result's digest: 128 bits make a collision between two different results
# negligible across any number of items, and 16 bytes per item stay small next to any batch.
DIGEST_BYTES = 16

# An exception's message as recorded (per failed item, for the report): the first line of a
# long message is enough to recognise it, and outcomes travel back in every batch result.
MESSAGE_MAX_CHARS = 200

# Data files `[items] path` reads (by suffix): CSV and JSON lines with pandas, Parquet with pyarrow.
DATA_SUFFIXES = {".csv": "CSV", ".parquet": "Parquet", ".pq": "Parquet", ".jsonl": "JSON lines",
                 ".ndjson": "JSON lines", ".json": "JSON lines"}

# Rows per record batch read from a Parquet file: pyarrow's default, so that with [items] count
# only the row groups holding the first rows are decoded, not the whole file.
PARQUET_BATCH_ROWS = 65_536

# How many of an [items] source's (or harness.benchmark's) first items the workload digest
# covers: a changed source nearly always changes its first items, and digesting every item
# would pickle all of them once more (check_items already pickles them once), seconds for millions.
ITEMS_DIGESTED = 1_000

# Hex digits kept of a file's sha256 in the workload's parts: 64 bits tell two versions of a
# file apart with certainty in practice and stay readable in env.json.
FILE_DIGEST_HEX = 16

_resolved: dict[tuple[str, str], Any] = {}
_resolve_lock = threading.Lock()


class UserItem(NamedTuple):
    """One of the user's items with its position: strategies, samples and checksums use `index`."""

    index: int
    value: Any


def resolve(ref: str, folder: str = "") -> Any:
    """The object a "module:attribute" reference names, imported with `folder` first on
    sys.path (cached per process). Raises ImportError or AttributeError as importing does."""
    key = (folder, ref)
    with _resolve_lock:
        if key in _resolved:
            return _resolved[key]
        if folder and folder not in sys.path:
            sys.path.insert(0, folder)
        module_name, _, attribute = ref.partition(":")
        obj: Any = importlib.import_module(module_name)
        for part in attribute.split("."):
            obj = getattr(obj, part)
        _resolved[key] = obj
        return obj


def remember(ref: str, folder: str, obj: Any) -> None:
    """Make `resolve(ref, folder)` return `obj` in this process (harness.benchmark's function
    object, which may live in a script that must not be imported a second time here)."""
    with _resolve_lock:
        _resolved[(folder, ref)] = obj


def result_digest(result: Any) -> bytes:
    """A stable digest of one result: of its pickle, or of its repr when it cannot be pickled."""
    try:
        data = pickle.dumps(result, protocol=5)
    except Exception:  # noqa: BLE001 - any unpicklable result still gets a digest
        data = repr(result).encode("utf-8", "replace")
    return hashlib.blake2b(data, digest_size=DIGEST_BYTES).digest()


def _message(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return text if len(text) <= MESSAGE_MAX_CHARS else text[: MESSAGE_MAX_CHARS - 1] + "…"


class ImportProblem(NamedTuple):
    """Why a process cannot import a user's function."""

    why: str  # "module:attribute: ExceptionType: message"
    missing: str  # the module Python found nowhere (ModuleNotFoundError.name); "" for another error


@dataclass(frozen=True)
class UserFunction:
    """The user's function as a Kernel: `function` per item, `batch_function` (optional) per batch."""

    function: str  # "module:attribute": one item in, one result out
    batch_function: str = ""  # "module:attribute": a list of items in, a list of results out
    folder: str = ""  # put first on sys.path before importing (the workload file's folder)
    retries: int = 3  # attempts after the first for a call that raises ([faults] retries)
    # An async function's items at once per batch, as the adaptive strategy's concurrency policy
    # sets it batch by batch; 0: the whole batch at once, so static:N runs N at a time.
    concurrency: int = 0
    # `[task] max_concurrency`: the cap on `concurrency` (and on a whole batch) under every strategy.
    max_concurrency: int | None = None

    @property
    def is_async(self) -> bool:
        """Whether `function` is an `async def` function (its items then run concurrently)."""
        return is_async_function(resolve(self.function, self.folder))

    def check_import(self) -> ImportProblem | None:
        """None when this process can import the function(s), else why not (the workers' preflight)."""
        for ref in filter(None, (self.function, self.batch_function)):
            try:
                resolve(ref, self.folder)
            except Exception as exc:  # noqa: BLE001 - reported, not raised
                missing = (exc.name or "") if isinstance(exc, ModuleNotFoundError) else ""
                return ImportProblem(f"{ref}: {type(exc).__name__}: {exc}", missing)
        return None

    def run_item(self, item: UserItem, attempt: int = 1) -> ItemOutcome:
        fn = resolve(self.function, self.folder)
        if is_async_function(fn):
            return self._run_async(fn, [item], 1, self.retries, time.time()).outcomes[0]
        return self._call(fn, item, self.retries)

    def run_batch(self, items: Sequence[UserItem], retries: int) -> BatchResult:
        started = time.time()
        outcomes = self._call_batch(items) if self.batch_function and items else None
        if outcomes is None:  # no batch function, or it raised: one call per item tells which failed
            fn = resolve(self.function, self.folder)
            if items and is_async_function(fn):
                limit = min(self.concurrency or len(items), self.max_concurrency or len(items))
                return self._run_async(fn, items, limit, retries, started)
            outcomes = [self._call(fn, item, retries) for item in items]
        return BatchResult(tuple(outcomes), sum(o.compute_s for o in outcomes), started, time.time())

    @staticmethod
    def _run_async(fn: Callable[[Any], Any], items: Sequence[UserItem], limit: int, retries: int,
                   started: float) -> BatchResult:
        """The items concurrently, at most `limit` at once. Their waits overlap, so each item's
        compute_s is its share of the batch's wall time (in proportion to its attempts' time):
        they sum to what the batch cost its worker thread, as a plain function's items do, and the
        run's ideal time (compute / threads) stays the busy time of the threads."""
        ran = run_async_batch(fn, [item.value for item in items], limit, retries)
        spent = sum(run.spent_s for run in ran.items)
        shares = [run.spent_s / spent * ran.wall_s if spent > 0 else ran.wall_s / len(items) for run in ran.items]
        outcomes = tuple(
            ItemOutcome(item.index, True, share, run.attempts, result_digest(run.value), "") if run.ok else
            ItemOutcome(item.index, False, share, run.attempts, b"", type(run.value).__name__, _message(run.value))
            for item, run, share in zip(items, ran.items, shares))
        return BatchResult(outcomes, ran.wall_s, started, time.time(), ran.limit, ran.latency_s)

    def _call_batch(self, items: Sequence[UserItem]) -> list[ItemOutcome] | None:
        fn = resolve(self.batch_function, self.folder)
        t0 = time.perf_counter()
        try:
            results = list(fn([item.value for item in items]))
        except Exception:  # noqa: BLE001 - the per-item calls find and record the failing items
            return None
        compute_s = (time.perf_counter() - t0) / len(items)
        if len(results) != len(items):
            return None
        return [ItemOutcome(item.index, True, compute_s, 1, result_digest(result), "")
                for item, result in zip(items, results)]

    @staticmethod
    def _call(fn: Callable[[Any], Any], item: UserItem, retries: int) -> ItemOutcome:
        """One item, retried up to `retries` times while it raises; the time of every attempt counts."""
        compute_s = 0.0
        for attempt in range(1, max(retries, 0) + 2):
            t0 = time.perf_counter()
            try:
                result = fn(item.value)
            except Exception as exc:  # noqa: BLE001 - a user's exception is a failed attempt
                compute_s += time.perf_counter() - t0
                error = exc
                continue
            compute_s += time.perf_counter() - t0
            return ItemOutcome(item.index, True, compute_s, attempt, result_digest(result), "")
        return ItemOutcome(item.index, False, compute_s, attempt, b"", type(error).__name__, _message(error))


class ItemList:
    """The user's items, held in the flow process, with the access paths of harness.work.synthetic.Workload."""

    def __init__(self, values: Sequence[Any], spec: WorkloadSpec) -> None:
        self._values = list(values)
        self.spec = spec  # as Workload.spec: [faults] for the adaptive strategy's path guard

    @property
    def retries(self) -> int:
        return self.spec.faults.retries

    @property
    def expected_compute_s(self) -> float:
        """0: a user's items have no cost known before they run (Workload's is their generated cost)."""
        return 0.0

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"ItemList({len(self._values)} items)"

    def values(self) -> Iterator[Any]:
        """The items themselves, in order, without their indices."""
        return iter(self._values)

    def items(self, start: int = 0, stop: int | None = None) -> Iterator[UserItem]:
        stop = len(self._values) if stop is None else min(stop, len(self._values))
        return map(UserItem._make, zip(range(start, stop), self._values[start:stop]))

    def take(self, indices: Sequence[int]) -> list[UserItem]:
        out = []
        for raw in indices:
            index = operator.index(raw)
            if not 0 <= index < len(self._values):
                raise IndexError(f"item index {index} out of range 0..{len(self._values) - 1}")
            out.append(UserItem(index, self._values[index]))
        return out

    def sample_indices(self, m: int) -> list[int]:
        """m indices spread evenly over the items (as Workload.sample_indices); all when m >= len."""
        n = len(self._values)
        if m >= n:
            return list(range(n))
        return [(2 * k + 1) * n // (2 * m) for k in range(max(m, 0))]

    def batches(self, size: int, indices: Sequence[int] | None = None) -> Iterator[list[UserItem]]:
        if size < 1:
            raise ValueError(f"batch size must be at least 1, got {size}")
        items: Iterator[UserItem] = self.items() if indices is None else iter(self.take(indices))
        return iter(lambda: list(itertools.islice(items, size)), [])

    def cursor(self, indices: Sequence[int] | None = None) -> ItemCursor:
        """Consecutive batches of any size, as Workload.cursor (the items travel as they are)."""
        order: Sequence[int] = range(len(self._values)) if indices is None else list(indices)
        return ItemCursor(len(order), lambda lo, hi: self.take(order[lo:hi]))


@dataclass(frozen=True)
class UserTask:
    """A user's task ready to run: the kernel every strategy calls and the items."""

    kernel: UserFunction
    workload: ItemList
    items_from: str  # where the items came from, for env.json and the report

    def describe(self) -> dict[str, Any]:
        return {"function": self.kernel.function, "batch_function": self.kernel.batch_function,
                "items_from": self.items_from, "folder": self.kernel.folder}

    def digest_parts(self) -> dict[str, Any]:
        """What makes two runs of this task the same work, by part, for the workload digest and
        env.json's `workload_parts` (`digest_differences` names the part that differs):

        - function (and batch_function): its reference and a hash of its module's file;
        - items: from a `path`, a hash of the file's content; from a `source`, its reference, a
          hash of its module's file and a digest of the first ITEMS_DIGESTED items; given to
          harness.benchmark, that digest; each with the number of items read.
        """
        folder = self.kernel.folder
        parts: dict[str, Any] = {"function": code_part(self.kernel.function, folder)}
        if self.kernel.batch_function:
            parts["batch_function"] = code_part(self.kernel.batch_function, folder)
        spec_items = self.workload.spec.items if self.workload.spec is not None else None
        items: dict[str, Any]
        if spec_items is not None and spec_items.path:
            items = {"path": spec_items.path, "sha256": file_digest(data_path(spec_items.path, Path(folder)))}
        else:
            first = hashlib.blake2b(digest_size=DIGEST_BYTES)
            for value in itertools.islice(self.workload.values(), ITEMS_DIGESTED):
                first.update(result_digest(value))
            if spec_items is not None and spec_items.source:
                items = {"source": spec_items.source} | code_part(spec_items.source, folder)
            else:
                items = {"given": self.items_from}
            items["first_items"] = first.hexdigest()
        parts["items"] = items | {"count": len(self.workload)}
        return parts


def file_digest(path: str | Path) -> str:
    """The first FILE_DIGEST_HEX hex digits of the sha256 of a file's content."""
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()[:FILE_DIGEST_HEX]


def code_part(ref: str, folder: str) -> dict[str, Any]:
    """A "module:attribute" reference and the file of the module it lives in (name and content
    hash; None for a module with no file, such as a built-in one)."""
    obj = resolve(ref, folder)
    module = inspect.getmodule(obj) or sys.modules.get(ref.partition(":")[0])
    file = getattr(module, "__file__", None)
    return {"ref": ref, "file": Path(file).name if file else None, "sha256": file_digest(file) if file else None}


def digest_differences(a: dict[str, Any] | None, b: dict[str, Any] | None) -> list[str]:
    """Which parts of two runs' tasks (env.json's `workload_parts`, UserTask.digest_parts) differ,
    one phrase each, for two runs whose workload digests differ."""
    if a is None and b is None:
        return []  # neither ran a [task]: their spec differs
    if a is None or b is None:
        return [f"run {'A' if a is None else 'B'} recorded no digest of a [task]'s function and items "
                f"(a synthetic workload, or a run from before the harness took one)"]
    out = []
    for key, what in (("function", "the function"), ("batch_function", "the batch function")):
        x, y = a.get(key) or {}, b.get(key) or {}
        if x.get("ref") != y.get("ref"):
            out.append(f"{what} differs: A {x.get('ref') or 'none'}, B {y.get('ref') or 'none'}")
        elif x.get("sha256") != y.get("sha256"):
            out.append(f"{what}'s code differs (its module file {y.get('file')})")
    ia, ib = a.get("items") or {}, b.get("items") or {}
    where = [i.get("path") or i.get("source") or i.get("given") for i in (ia, ib)]
    if where[0] != where[1]:
        out.append(f"the items come from elsewhere: A {where[0]}, B {where[1]}")
    elif ia.get("sha256") != ib.get("sha256"):
        out.append(f"the items file {where[0]} differs" if "path" in ia
                   else f"the items source's code differs (its module file {ib.get('file')})")
    elif ia.get("first_items") != ib.get("first_items"):
        out.append(f"the first items of {where[0]} differ")
    if ia.get("count") != ib.get("count"):
        out.append(f"the number of items differs: A {ia.get('count')}, B {ib.get('count')}")
    return out or ["the function and its items are the same: the workload file's other settings differ"]


# --- loading (in the flow process, before anything starts) ----------------------------------


def workload_folder(spec: WorkloadSpec) -> Path:
    """The folder the workload file is in: its modules and data files are found there."""
    source = Path(spec.source) if spec.source else None
    return source.resolve().parent if source is not None and source.is_file() else Path.cwd()


def _import(ref: str, folder: Path, where: str) -> Any:
    try:
        return resolve(ref, str(folder))
    except ModuleNotFoundError as exc:
        raise SpecError(f"{where}: found {ref!r}, but module {exc.name!r} cannot be imported (looked in {folder} "
                        f"first, then the Python path), expected a module importable from the workload file's "
                        f"folder") from None
    except AttributeError as exc:
        module = ref.partition(":")[0]
        raise SpecError(f"{where}: found {ref!r}, but {exc}; expected an attribute of module {module!r}") from None
    except Exception as exc:  # noqa: BLE001 - the user's module failed while importing
        raise SpecError(f"{where}: found {ref!r}, but importing it raised {type(exc).__name__}: {exc}") from None


def _callable(ref: str, folder: Path, where: str) -> Callable[..., Any]:
    obj = _import(ref, folder, where)
    if not callable(obj):
        raise SpecError(f"{where}: found {ref!r}, a {type(obj).__name__}, expected a callable")
    return obj


def take_items(produced: Iterable[Any], count: int | None, where: str, limit: int = MAX_ITEMS,
               remedy: str = "set [items] count to read the first N") -> list[Any]:
    """The first `count` items of `produced`, pulling no more than that from it; without a count,
    all of them, but never more than `limit`: an endless source fails after `limit` + 1 items
    rather than filling memory (SpecError saying `remedy`). The iterable's exceptions propagate."""
    if count is not None:
        return list(itertools.islice(produced, count))
    values = list(itertools.islice(produced, limit + 1))
    if len(values) > limit:
        raise SpecError(f"{where}: yields more than {limit:_} items (the most a run holds); {remedy}")
    return values


def _items_from_source(ref: str, folder: Path, count: int | None, where: str, limit: int = MAX_ITEMS) -> list[Any]:
    make = _callable(ref, folder, where)
    try:
        produced = make()
    except Exception as exc:  # noqa: BLE001 - the user's callable failed
        raise SpecError(f"{where}: calling {ref}() raised {type(exc).__name__}: {exc}") from None
    if isinstance(produced, (str, bytes)) or not isinstance(produced, Iterable):
        raise SpecError(f"{where}: {ref}() returned a {type(produced).__name__}, expected an iterable of items "
                        f"(a list, a generator, ...)")
    try:
        return take_items(produced, count, f"{where}: {ref}()", limit)
    except SpecError:
        raise
    except Exception as exc:  # noqa: BLE001 - the user's generator failed
        raise SpecError(f"{where}: iterating over {ref}() raised {type(exc).__name__}: {exc}") from None


def data_path(path_text: str, folder: Path) -> Path:
    """`[items] path` as a file: relative to the workload file's folder unless absolute."""
    path = Path(path_text)
    return path if path.is_absolute() else folder / path


def _read_parquet(path: Path, count: int | None) -> Any:
    """The first `count` rows (all without a count) as a DataFrame, decoding only the record
    batches that hold them."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with pq.ParquetFile(path) as file:
        if count is None:
            table = file.read()
        else:
            batches, rows = [], 0
            for batch in file.iter_batches(batch_size=min(count, PARQUET_BATCH_ROWS)):
                batches.append(batch)
                rows += batch.num_rows
                if rows >= count:
                    break
            table = pa.Table.from_batches(batches, schema=file.schema_arrow).slice(0, count)
    return table.to_pandas()


def _json_lines(path: Path, count: int | None) -> list[tuple[int, bytes]]:
    """The first `count` non-blank lines of a JSON lines file (all without a count), numbered
    from 1 as in the file: blank lines are no rows, so they don't count towards `count`."""
    with path.open("rb") as file:
        return list(itertools.islice(((n, line) for n, line in enumerate(file, start=1) if line.strip()), count))


def _bad_json_line(lines: Sequence[tuple[int, bytes]]) -> str:
    """Where JSON lines pandas refused are broken: "line N: why", or "" when each is a JSON object."""
    for number, line in lines:
        try:
            value = json.loads(line.rstrip(b"\r\n"))  # so that an error's column is on this line
        except UnicodeDecodeError as exc:
            return f"line {number}: not UTF-8 ({exc.reason} at byte {exc.start + 1})"
        except json.JSONDecodeError as exc:
            return f"line {number}: not valid JSON ({exc.msg} at column {exc.colno})"
        if not isinstance(value, dict):
            return f"line {number}: found a JSON {type(value).__name__}, expected an object"
    return ""


def _items_from_path(path_text: str, folder: Path, count: int | None, where: str) -> list[dict[str, Any]]:
    """The rows of a data file as dicts of their columns: the first `count` only are read."""
    import pandas as pd

    path = data_path(path_text, folder)
    kind = DATA_SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise SpecError(f"{where}: found {path_text!r}, expected a file ending in {', '.join(DATA_SUFFIXES)} "
                        f"(CSV, Parquet or JSON lines)")
    if not path.is_file():
        raise SpecError(f"{where}: found {path_text!r}, but there is no such file ({path})")
    lines: list[tuple[int, bytes]] = []
    try:
        if kind == "CSV":
            frame = pd.read_csv(path, nrows=count)
        elif kind == "Parquet":
            frame = _read_parquet(path, count)
        else:
            lines = _json_lines(path, count)
            frame = pd.read_json(io.BytesIO(b"".join(line for _, line in lines)), lines=True) if lines else None
    except ImportError as exc:  # a broken install: pyarrow is a dependency of the harness
        raise SpecError(f"{where}: cannot read {path} as {kind}: {exc} (pip install pyarrow)") from None
    except Exception as exc:  # noqa: BLE001 - the readers' parse errors vary by format
        line = _bad_json_line(lines) if kind == "JSON lines" else ""
        if line:
            raise SpecError(f"{where}: cannot read {path} as JSON lines: {line}; expected one JSON object per "
                            f"line") from None
        raise SpecError(f"{where}: cannot read {path} as {kind}: {type(exc).__name__}: {exc}") from None
    return [] if frame is None else frame.to_dict("records")  # none: check_items says so


def check_items(values: Sequence[Any], where: str) -> None:
    """Items travel to worker processes: each must pickle (as Prefect and Dask pickle them)."""
    if not values:
        raise SpecError(f"{where}: found no items, expected at least one")
    import cloudpickle

    try:
        cloudpickle.dumps(values)
    except Exception:  # noqa: BLE001 - find the first bad item for the message
        for index, value in enumerate(values):
            try:
                cloudpickle.dumps(value)
            except Exception as exc:  # noqa: BLE001
                raise SpecError(f"{where}: item {index} ({type(value).__name__}) cannot be pickled "
                                f"({type(exc).__name__}: {exc}); expected items that pickle, as they "
                                f"travel to worker processes") from None
        raise


def check_max_concurrency(ref: str, folder: str | Path, max_concurrency: int | None, where: str) -> None:
    """A cap on items at once is for an `async def` function only: a plain function's items run one
    at a time in each task, so a cap given for one would do nothing, and is more likely a function
    not (or no longer) async than an intent (adaptive_map refuses it alike)."""
    if max_concurrency is not None and not is_async_function(resolve(ref, str(folder))):
        raise SpecError(f"{where}: found {max_concurrency!r} for {ref!r}, a plain function; expected it only with "
                        f"an async def function (a plain function runs one item at a time in each task)")


def load_task(spec: WorkloadSpec) -> UserTask:
    """The spec's `[task]` and `[items]` resolved: function imported, items read and checked.

    Raises SpecError (exit 2) naming the file, the key and the problem; writes nothing.
    """
    assert spec.task is not None
    folder = workload_folder(spec)
    source = spec.source or "<workload>"
    _callable(spec.task.function, folder, f"{source}: [task] function")
    if spec.task.batch_function:
        where = f"{source}: [task] batch_function"
        if is_async_function(_callable(spec.task.batch_function, folder, where)):
            raise SpecError(f"{where}: found {spec.task.batch_function!r}, an async def function, expected a plain "
                            f"one (an async [task] function's items already run concurrently in each task)")
    check_max_concurrency(spec.task.function, folder, spec.task.max_concurrency, f"{source}: [task] max_concurrency")
    items = spec.items
    if items.source:
        where = f"{source}: [items] source"
        values = _items_from_source(items.source, folder, items.count, where)
        items_from = items.source
    else:
        where = f"{source}: [items] path"
        values = _items_from_path(items.path, folder, items.count, where)
        items_from = items.path
    check_items(values, where)
    kernel = UserFunction(spec.task.function, spec.task.batch_function, str(folder), spec.faults.retries,
                          max_concurrency=spec.task.max_concurrency)
    return UserTask(kernel, ItemList(values, spec), items_from)
