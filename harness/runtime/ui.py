"""`harness ui RESULTS_DIR`: the Prefect UI over the database the runs into a results folder
left there (README, "Browsing runs in the Prefect UI").

The server is the runs' own lean server with the UI on, over RESULTS_DIR/.prefect/prefect.db
(or, with `run_id`, the database of a run that ran while another held that one). It only
reads what the runs wrote, so it may be up while a run writes (SQLite in WAL mode lets
readers in beside the one writer).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path

from harness.errors import SpecError
from harness.runtime.server import DB_DIR, RUNS_DB_DIR, PrefectServer, start_prefect_server
from harness.runtime.template_db import DB_NAME, database_damage


def own_databases(results_dir: Path) -> list[str]:
    """Run ids of the runs that kept a database of their own (they ran beside another)."""
    runs = Path(results_dir) / DB_DIR / RUNS_DB_DIR
    return sorted(p.parent.name for p in runs.glob(f"*/{DB_NAME}"))


def database_dir(results_dir: Path, run_id: str | None = None) -> Path:
    """The folder of the database to serve; SpecError naming what is missing."""
    shared = Path(results_dir) / DB_DIR
    folder = shared if run_id is None else shared / RUNS_DB_DIR / run_id
    if not (folder / DB_NAME).is_file():
        if not Path(results_dir).is_dir():
            raise SpecError(f"{results_dir}: no such folder (expected a results folder, `harness run --out`)")
        if run_id is not None:
            others = own_databases(results_dir)
            raise SpecError(f"--run {run_id}: found no database of its own in {folder}, expected one of: "
                            f"{', '.join(others) or 'none (every run used the shared one: omit --run)'}")
        raise SpecError(f"{results_dir}: found no Prefect database ({folder / DB_NAME}); expected a folder "
                        "that `harness run --out` wrote with the harness's own Prefect server (runs on "
                        "your own Prefect API are in that API's UI)")
    # A server on a damaged file exits with pages of SQLAlchemy log and never names it. `ui`
    # only reads: `harness run --out` into the folder sets it aside (server.set_aside_if_damaged).
    if (damage := database_damage(folder / DB_NAME)) is not None:
        raise SpecError(f"{folder / DB_NAME}: not a sound SQLite database ({damage}); the runs it held cannot be "
                        f"shown. Move it aside (mv {folder / DB_NAME} {folder / DB_NAME}.damaged) or run a "
                        f"workload with --out {results_dir}, which sets it aside and starts a fresh one; the "
                        "run folders themselves are untouched")
    return folder


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@contextlib.contextmanager
def serve_ui(results_dir: Path, port: int | None = None, run_id: str | None = None) -> Iterator[PrefectServer]:
    """A Prefect server with the UI on over the results folder's database, stopped on exit."""
    folder = database_dir(results_dir, run_id)
    if port is not None and not _port_free(port):
        raise SpecError(f"--port: found {port}, which another program is listening on; expected a free "
                        "port (or omit --port for any free one)")
    server = start_prefect_server(db_dir=folder, ui=True, port=port)
    try:
        yield server
    finally:
        server.stop()


def ui_url(server: PrefectServer) -> str:
    """The UI's address: the API's, without /api."""
    return server.api_url.removesuffix("/api")
