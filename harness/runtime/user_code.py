"""Dask workers ready for a user's task, and a preflight that names any worker that still cannot
import the function (exit 2).

The harness's own cluster runs on this machine: a WorkerPlugin puts the workload file's folder
on every worker's sys.path. A WorkerPlugin rather than a one-off `client.run`: Dask runs a
registered plugin's `setup` on every worker that joins later too (a restarted worker, a
scaled-up cluster). Items of the user's own classes are unpickled on the worker before the
task's function runs, so the path must be there before any task arrives.

A cluster of the user's (`--dask-address`) may have its workers on machines where this folder
does not exist, or holds other files: its workers are never pointed at it. Each is first asked
to import the function as its own environment has it (the module installed, or its folder on
PYTHONPATH: nothing is shipped then). If one cannot, the modules of the folder that the
function's module imports, transitively (package folders whole), go to every worker in one zip
through Dask's UploadFile plugin, which reaches workers that join later too; the zip goes first
on sys.path, as `Client.upload_file` puts it. What is not in the folder (third-party packages,
the harness itself) is never shipped: a worker that lacks it is named with what to install.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import sys
import tempfile
import zipfile
from collections.abc import Iterable, Sequence
from modulefinder import ModuleFinder
from pathlib import Path
from typing import Any

from distributed import WorkerPlugin
from distributed.diagnostics.plugin import UploadFile

from harness.errors import SpecError
from harness.work.user_task import ImportProblem, UserFunction, remember, resolve

# Characters of the content digest in the shipped zip's file name: a changed module gives a
# new file, never one rewritten in place under a path a worker already has on sys.path
# (zipimport keeps an archive's directory per path).
ARCHIVE_DIGEST_CHARS = 16


class ImportPathPlugin(WorkerPlugin):
    """Put one folder first on sys.path of every worker (idempotent)."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self.name = f"harness-import-path-{folder}"

    def setup(self, worker: Any) -> None:
        if self.folder not in sys.path:
            sys.path.insert(0, self.folder)


class ShippedCode(UploadFile):
    """Dask's UploadFile for the zip of a user's modules, put first on sys.path but not imported
    on arrival (load=False): a module that fails to import there (a dependency not installed) is
    the preflight's to name, where an import at upload would stop a joining worker from starting."""

    def __init__(self, archive: str) -> None:
        super().__init__(archive, load=False)

    async def setup(self, worker: Any) -> None:
        await super().setup(worker)
        path = os.path.join(worker.local_directory, self.filename)
        if path not in sys.path:
            sys.path.insert(0, path)


def local_modules(folder: Path, modules: Iterable[str]) -> list[Path]:
    """The module files and package folders in `folder` that `modules` import, transitively
    (their import statements, as modulefinder reads them, function bodies included); sorted.

    Nothing from elsewhere (the standard library, site-packages), no compiled extension, and no
    name this process imported from another place (e.g. `harness` itself)."""
    folder = folder.resolve()
    finder = ModuleFinder(path=[str(folder)])  # only the folder: other imports are left unresolved
    for name in modules:
        try:
            finder.import_hook(name)
        except ImportError:  # not in the folder (installed here): not ours to ship
            continue
        except SyntaxError:  # a module only a function body imports: it fails on the workers as here
            continue
    tops = {name.partition(".")[0] for name, module in finder.modules.items()
            if module.__file__ and Path(module.__file__).resolve().is_relative_to(folder)}
    found = []
    for top in sorted(tops):
        imported = getattr(sys.modules.get(top), "__file__", None)
        if imported and not Path(imported).resolve().is_relative_to(folder):
            continue
        if (folder / top / "__init__.py").is_file():
            found.append(folder / top)
        elif (folder / f"{top}.py").is_file():
            found.append(folder / f"{top}.py")
    return found


def _archive_members(folder: Path, paths: Sequence[Path]) -> list[tuple[Path, str]]:
    members = []
    for path in paths:
        files = [path] if path.is_file() else sorted(
            f for f in path.rglob("*") if f.is_file() and "__pycache__" not in f.parts and f.suffix != ".pyc")
        members += [(f, f.relative_to(folder).as_posix()) for f in files]
    return members


def code_archive(folder: Path, paths: Sequence[Path], into: Path) -> Path:
    """A zip in `into` of `paths` (under their names relative to `folder`), named by its content."""
    members = _archive_members(folder, paths)
    digest = hashlib.blake2b()
    for file, name in members:
        digest.update(name.encode() + b"\0" + file.read_bytes() + b"\0")
    archive = into / f"harness-code-{digest.hexdigest()[:ARCHIVE_DIGEST_CHARS]}.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for file, name in members:
            z.write(file, name)
    return archive


def ship_code(client: Any, folder: str, modules: Iterable[str]) -> list[str]:
    """Send the folder's modules that `modules` import to every worker, now and joining later;
    returns the names of the files and packages sent (none when none is in the folder)."""
    paths = local_modules(Path(folder), modules)
    if not paths:
        return []
    with tempfile.TemporaryDirectory(prefix="harness-code-") as tmp:
        plugin = ShippedCode(str(code_archive(Path(folder).resolve(), paths, Path(tmp))))  # reads the zip
    # One name per folder: a later run's zip replaces this one for workers that join after it.
    client.register_plugin(plugin, name=f"harness-code-{folder}")
    return [path.name + ("/" if path.is_dir() else "") for path in paths]


def _check_import(kernel: UserFunction) -> ImportProblem | None:
    return kernel.check_import()


def _problems(client: Any, kernel: UserFunction) -> dict[str, ImportProblem]:
    return {worker: problem for worker, problem in client.run(_check_import, kernel).items() if problem}


def prepare_workers(client: Any, kernel: UserFunction, source: str, *, ship: bool = False,
                    also: Sequence[str] = ()) -> UserFunction:
    """Make every worker able to import the function; returns the kernel the tasks run.

    `ship`: the workers are a cluster of the user's, perhaps on other machines: they get a kernel
    without this machine's folder, and the folder's modules when one of them cannot import the
    function (`also`: more "module:attribute" references whose modules they need, e.g. of the
    items' source). Otherwise the folder goes on their sys.path. Raises SpecError (exit 2)
    naming a worker that still cannot import it."""
    shipped: list[str] = []
    if ship:
        if kernel.folder:
            # This process imported the function from the folder: the folder-less kernel finds it here.
            for ref in filter(None, (kernel.function, kernel.batch_function)):
                remember(ref, "", resolve(ref, kernel.folder))
        folder, kernel = kernel.folder, dataclasses.replace(kernel, folder="")
        problems = _problems(client, kernel)
        if problems and folder:
            refs = filter(None, (kernel.function, kernel.batch_function, *also))
            shipped = ship_code(client, folder, [ref.partition(":")[0] for ref in refs])
            if shipped:
                problems = _problems(client, kernel)
    else:
        if kernel.folder:
            client.register_plugin(ImportPathPlugin(kernel.folder))
        problems = _problems(client, kernel)
        folder = kernel.folder
    if problems:
        raise SpecError(_refusal(source, problems, shipped, folder))
    return kernel


def _refusal(source: str, problems: dict[str, ImportProblem], shipped: list[str], folder: str) -> str:
    worker, problem = sorted(problems.items())[0]
    others = f" (and {len(problems) - 1} other workers)" if len(problems) > 1 else ""
    said = f"{source}: [task] function: worker {worker}{others} cannot import {problem.why}"
    if not shipped:
        return (f"{said}; expected every Dask worker to import the module: on a cluster of your own, install it "
                f"there or put its folder on the workers' PYTHONPATH (README \"Measure your own task\")")
    sent = f"the harness sent {', '.join(shipped)} from {folder} to the workers"
    missing = problem.missing.partition(".")[0]
    if missing and missing not in {name.removesuffix(".py").rstrip("/") for name in shipped}:
        return (f"{said}; {sent}, but module {missing!r} is not installed there: install the package that "
                f"provides it on every worker, as in this environment (docs/runtime-notes.md, \"Your own task "
                f"on your own cluster\")")
    return (f"{said}; {sent}, and it still fails there: expected it to import on the workers as it does here, "
            f"with the same packages installed (docs/runtime-notes.md, \"Your own task on your own cluster\")")
