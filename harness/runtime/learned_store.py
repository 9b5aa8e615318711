"""Where an adaptive run's memory lives between runs (mechanism; what it holds is
harness.policy.learned): a key from the function's identity and the runtime's shape, and a
small JSON document under that key in a local file or a Prefect Variable.

Never an exception to the run: a memory that cannot be read (corrupt, foreign, from another
version, an API out of reach) is a cold start with a `MemoryWarning`, one that cannot be
written is a warning too. docs/api.md ("Memory across runs") says what is stored and where.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import inspect
import json
import os
import re
import tempfile
import types
import warnings
from pathlib import Path
from typing import Any

from harness.policy.learned import Learned
from harness.runtime.cache import cache_dir

# Where a memory lives: a file under the harness's cache folder, or a Prefect Variable on the
# flow's API (shared by runs on fresh infrastructure). A folder (a path) is a local store there.
LOCATIONS = ("local", "prefect")

# The cache's subfolder of local memories, one JSON file per key.
LOCAL_FOLDER = "memory"

# The readable part of a key: the function's name, at most this long (a Prefect Variable name
# holds 255 characters; the digest makes the key unique).
NAME_CHARS = 80

# Hex digits of the identity's SHA-256 in a key: 64 bits, no collision among any one user's functions.
DIGEST_CHARS = 16

# Plain values whose repr is the same in every run, so a partial's bound arguments of these
# types are part of its identity; any other bound value counts by its type only.
_PLAIN = (type(None), bool, int, float, complex, str, bytes)


class MemoryWarning(UserWarning):
    """A memory was not read or not written: the run went on without it (a cold start)."""


def memory_key(fn: Any, task_runner: str, worker_threads: int) -> str:
    """`adaptive-map-<name>-<digest>`: lowercase letters, digits and dashes (a valid Prefect
    Variable name and file name). The digest covers the function's module, qualified name and
    code, its bound arguments when it is a partial, the task runner's kind and the threads."""
    name, parts = _identity(fn)
    return _key("adaptive-map", name, [*parts, f"task runner {task_runner}", f"worker threads {worker_threads}"])


def stage_key(workload: str, parts: list[str]) -> str:
    """`harness-run-<workload>-<digest>`: the key of the CLI's adaptive stages, the digest over
    `parts` (the workload's digest, the pattern variant, the runtime's shape)."""
    return _key("harness-run", workload, parts)


def _key(prefix: str, name: str, identity: list[str]) -> str:
    digest = hashlib.sha256("\n".join(identity).encode()).hexdigest()[:DIGEST_CHARS]
    readable = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:NAME_CHARS].strip("-") or "fn"
    return f"{prefix}-{readable}-{digest}"


def _identity(fn: Any) -> tuple[str, list[str]]:
    """(a readable name, the lines the key hashes) of a callable."""
    if isinstance(fn, functools.partial):
        name, parts = _identity(fn.func)
        bound = [_plain(a) for a in fn.args] + [f"{k}={_plain(v)}" for k, v in sorted(fn.keywords.items())]
        return name, [*parts, f"partial {', '.join(bound)}"]
    if inspect.ismethod(fn):  # a bound method: the function, and the class it is bound to
        name, parts = _identity(fn.__func__)
        return name, [*parts, f"bound to {_qualified(type(fn.__self__))}"]
    code = getattr(fn, "__code__", None)
    if isinstance(code, types.CodeType):
        return _qualified(fn), [_qualified(fn), _code_digest(code)]
    if not isinstance(fn, (types.BuiltinFunctionType, types.MethodDescriptorType, type)) and \
            hasattr(type(fn), "__call__"):
        call = getattr(type(fn).__call__, "__code__", None)  # a callable object: its class's __call__
        if isinstance(call, types.CodeType):
            return _qualified(type(fn)), [_qualified(type(fn)), _code_digest(call)]
    return _qualified(fn), [_qualified(fn)]  # a builtin: its name is its code


def _qualified(obj: Any) -> str:
    module = getattr(obj, "__module__", None) or type(obj).__module__
    return f"{module}.{getattr(obj, '__qualname__', None) or type(obj).__qualname__}"


def _code_digest(code: types.CodeType) -> str:
    """SHA-256 of the bytecode, the names it loads and its constants (nested code included):
    the same body gives the same digest in every run of the same Python; comments do not count."""
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_names).encode())
    for const in code.co_consts:
        h.update(_const(const).encode())
    return h.hexdigest()


def _const(value: Any) -> str:
    if isinstance(value, types.CodeType):
        return _code_digest(value)
    if isinstance(value, (tuple, frozenset)):  # a frozenset's order varies with the hash seed
        inner = [_const(v) for v in value]
        return f"{type(value).__name__}({', '.join(sorted(inner) if isinstance(value, frozenset) else inner)})"
    return repr(value)


def _plain(value: Any) -> str:
    if isinstance(value, _PLAIN):
        return repr(value)
    if isinstance(value, (tuple, list)) and all(isinstance(v, _PLAIN) for v in value):
        return repr(value)
    return f"<{type(value).__name__}>"


def check_location(memory: object) -> str | None:
    """A few words on what is wrong with `memory`, or None when it is a valid location."""
    if memory is None or memory in LOCATIONS or isinstance(memory, os.PathLike):
        return None
    return f"found {memory!r}, expected one of {', '.join(map(repr, LOCATIONS))}, a folder (a Path) or None"


# Where `memory="local"` keeps its files when set (else <cache>/memory): a volume several
# machines share, or a test session's own folder (tests/conftest.py), so no test starts from
# what an earlier session left there.
MEMORY_DIR_ENV = "HARNESS_MEMORY_DIR"


def local_path(memory: str | os.PathLike[str], key: str) -> Path:
    """The file a local memory is kept in: HARNESS_MEMORY_DIR or the cache folder's, or the folder given."""
    if memory == "local":
        folder = Path(os.environ[MEMORY_DIR_ENV]) if os.environ.get(MEMORY_DIR_ENV) else cache_dir() / LOCAL_FOLDER
    else:
        folder = Path(memory)
    return folder / f"{key}.json"


def load(memory: str | os.PathLike[str] | None, key: str) -> Learned | None:
    """The memory stored under `key`, or None (none yet, or unreadable: a MemoryWarning says why)."""
    if memory is None:
        return None
    where = _where(memory, key)
    try:
        stored = _read_variable(key) if memory == "prefect" else _read_file(local_path(memory, key))
    except Exception as exc:  # noqa: BLE001  (an unreachable API, an unreadable file: run cold)
        _warn(f"could not read {where} ({type(exc).__name__}: {exc})")
        return None
    if stored is None:
        return None
    try:
        return Learned.from_dict(stored)
    except ValueError as exc:
        _warn(f"ignored {where}: {exc}")
        return None


def save(memory: str | os.PathLike[str] | None, key: str, learned: Learned) -> None:
    """Store `learned` under `key` (replacing what was there); a MemoryWarning if it cannot be."""
    if memory is None:
        return
    try:
        if memory == "prefect":
            from prefect.variables import Variable

            Variable.set(key, learned.to_dict(), overwrite=True, _sync=True)
        else:
            _write_file(local_path(memory, key), learned.to_dict())
    except Exception as exc:  # noqa: BLE001  (the run succeeded; only its memory is lost)
        _warn(f"could not write {_where(memory, key)} ({type(exc).__name__}: {exc})")


def _where(memory: str | os.PathLike[str], key: str) -> str:
    if memory == "prefect":
        return f"the memory in Prefect Variable {key!r}"
    return f"the memory in {local_path(memory, key)}"


def _warn(message: str) -> None:
    warnings.warn(f"adaptive memory: {message}; this run starts cold or keeps nothing", MemoryWarning, stacklevel=4)


def _read_variable(key: str) -> object:
    from prefect.variables import Variable

    return Variable.get(key, default=None, _sync=True)


def _read_file(path: Path) -> object:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from exc  # reported as an unreadable entry


def _write_file(path: Path, document: dict[str, Any]) -> None:
    """Atomically: a temporary file in the same folder, then os.replace. Concurrent writers of
    one key each replace the whole file, so a reader sees one writer's entry, never a mix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, indent=1)
            f.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
