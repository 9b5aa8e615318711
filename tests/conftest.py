"""Shared fixtures.

`runtime` is the one real Prefect API server and Dask LocalCluster (2 workers x 1 thread) of a
pytest session. It starts only when a test asks for it, so the pure tests (test_spec,
test_workloads, test_controller) never start a server. While it is up, `open_runtime` has put
PREFECT_API_URL and the other client settings into os.environ; it restores them when the
session ends. Tests that use it carry the `cluster` marker: `pytest -m cluster` selects them,
`pytest -m "not cluster"` skips them.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable, Iterator

import pytest

from harness.workload.spec import WorkloadSpec, parse_spec

# The harness's pytest plugin (harness_benchmark), also when the installed metadata predates its
# entry point; named as the entry point is, so it is loaded once either way.
pytest_plugins = ["harness.api.pytest_plugin"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "cluster: needs the session's real Prefect API server and Dask LocalCluster (the `runtime` fixture)",
    )
    # memory="local" (adaptive_map, adaptive_warm) in a folder of this session's, inherited by the
    # CLI runs the tests start: no test starts warm from what an earlier session learned.
    import os
    import tempfile

    os.environ["HARNESS_MEMORY_DIR"] = tempfile.mkdtemp(prefix="harness-test-memory-")
    # A Dask scheduler always opens its HTTP server, on 8787 when free; on a shared machine another
    # run often holds 8787 and Dask moves to a free port with this warning, which is not ours.
    config.addinivalue_line("filterwarnings", "ignore:Port 8787 is already in use:UserWarning")


@pytest.fixture
def keep_signal_handlers() -> Iterator[None]:
    """harness.cli.main installs SIGTERM and SIGINT handlers for the CLI process; a test that calls
    it in-process gives pytest its own handlers back afterwards."""
    import signal

    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGINT)}
    yield
    for sig, handler in saved.items():
        signal.signal(sig, handler)


@pytest.fixture(scope="session")
def runtime() -> Iterator[object]:
    """A real Prefect API server and a 2-worker Dask LocalCluster, shared by the whole session.

    Uses an existing API when PREFECT_API_URL is already set (as the harness itself does).
    """
    from harness.runtime import LEAN, open_runtime
    from harness.workload.spec import ClusterSpec

    # lean, as the harness's own runs use it; tests of stock submit under lean_task_context(STOCK).
    from harness.runtime.client_env import without_flow_heartbeat

    # The tests' flows without Prefect's heartbeat join at each flow exit (0-1 s each, hundreds of
    # flows), as the harness's own runs do (docs/runtime-notes.md).
    with open_runtime(ClusterSpec(workers=2, threads_per_worker=1), LEAN) as rt, without_flow_heartbeat():
        yield rt


@pytest.fixture(scope="session")
def harness_runtime(runtime: object) -> object:
    """harness_benchmark runs on the session's runtime above, not a second cluster."""
    from harness.api.benchmarking import SessionRuntime

    return SessionRuntime(fixed=runtime)


def spec_from_toml(text: str, source: str = "<test>") -> WorkloadSpec:
    """A WorkloadSpec from (indented) TOML text, validated exactly as a workload file is."""
    return parse_spec(textwrap.dedent(text), source)


def workload_toml(
    name: str = "test",
    *,
    seed: int = 11,
    count: int = 40,
    payload_bytes: int = 32,
    kind: str = "cpu",
    mean_ms: float = 0.5,
    distribution: str = "constant",
    spread: float = 0.5,
    transient_rate: float = 0.0,
    permanent_rate: float = 0.0,
    retries: int = 3,
    strategies: tuple[str, ...] = ("per_item", "static:10"),
    repeats: int = 1,
) -> str:
    """TOML text of a small map workload; every key of the file contract has a say here."""
    listed = ", ".join(f'"{s}"' for s in strategies)
    return textwrap.dedent(f"""\
        name = "{name}"
        seed = {seed}

        [items]
        count = {count}
        payload_bytes = {payload_bytes}

        [cost]
        kind = "{kind}"
        mean_ms = {mean_ms}
        distribution = "{distribution}"
        spread = {spread}

        [faults]
        transient_rate = {transient_rate}
        permanent_rate = {permanent_rate}
        retries = {retries}

        [pattern]
        kind = "map"

        [cluster]
        workers = 2
        threads_per_worker = 1

        [run]
        strategies = [{listed}]
        repeats = {repeats}
        """)


@pytest.fixture(scope="session")
def make_spec() -> Callable[..., WorkloadSpec]:
    """`make_spec(toml_text)` or `make_spec(name=..., count=..., ...)` (see `workload_toml`)."""

    def build(text: str | None = None, /, **fields: object) -> WorkloadSpec:
        if text is None:
            text = workload_toml(**fields)  # type: ignore[arg-type]
        elif fields:
            raise TypeError("give TOML text or workload_toml fields, not both")
        return spec_from_toml(text)

    return build


@pytest.fixture(scope="session")
def make_toml() -> Callable[..., str]:
    """`make_toml(name=..., count=..., ...)`: the TOML text `workload_toml` builds."""
    return workload_toml
