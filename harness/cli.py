"""The command line: the only place that prints for the user and turns errors into exit codes.

The user-facing text (purpose, examples, exit codes, where results go) is in the parser's
descriptions and epilogs below, not in this docstring. `--help` stays fast: nothing here
imports Prefect, Dask or pandas until a command runs.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import textwrap
import tomllib
from dataclasses import dataclass
from pathlib import Path

from harness.errors import HarnessError, RunError, SpecError

_interrupted: list[int] = []  # signals received; see _interrupt

EXIT_CODES = """\
exit codes:
  0    done
  1    the run failed; for compare: some strategy of RUN_B is significantly slower than in RUN_A
  2    bad input: the message names the file, table, key, what was found and what was expected;
       nothing is written. For compare also: runs that are not like for like (without --force),
       or too few repeats for a verdict
  130  interrupted (Ctrl-C or SIGTERM); no run folder is written, unless the measurements
       were already written (the message then names the folder)"""

RESULTS = """\
where results go:
  run writes results/<workload name>/<run id>/ (or under --out DIR): report.md, report.html,
  the plots (PNG), runs.csv, trace.csv, env.json and results.json; results/<workload name>/latest points at
  the newest complete run. run prints the report, then the folder's path as its last line.
  report, compare and table print to stdout and write nothing else (report rewrites the
  folder's report.md, report.html and plots; history writes RESULTS_DIR/index.html and one
  history_<workload>.png per workload)."""


def _say(message: str) -> None:
    if _interrupted:
        # The KeyboardInterrupt raised by _interrupt was swallowed on its way (Python ignores
        # exceptions raised inside gc callbacks and __del__): stop at this progress point.
        raise KeyboardInterrupt(f"signal {_interrupted[0]}")
    print(f"[harness] {message}", file=sys.stderr, flush=True)


def _repeats_arg(text: str) -> int | str:
    """--repeats: "auto" or an integer (its range is the spec's to check, with the spec's message)."""
    if text == "auto":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"found {text!r}, expected an integer from 1 to 100 or \"auto\"") from None


def cmd_run(args: argparse.Namespace) -> int:
    from harness.workload.spec import load_security, load_spec, with_overrides

    for option, value in (("--worker-timeout", args.worker_timeout), ("--connect-timeout", args.connect_timeout)):
        if not 0 < value < float("inf"):
            raise SpecError(f"{option}: found {value}, expected a number of seconds above 0")

    spec = with_overrides(load_spec(args.workload), strategies=args.strategies, repeats=args.repeats,
                          budget_s=args.budget, address=args.dask_address, quick=args.quick,
                          security=load_security(args.dask_security) if args.dask_security else None)
    # What can be checked without the runtime is checked before it starts (exit 2, nothing written).
    from harness.measure.admission import check_disk, check_memory, check_out

    check_out(Path(args.out), spec.name)
    check_memory(spec)
    check_disk(spec, Path(args.out))
    # Imported after the spec is known to be good: Prefect and Dask take seconds to import.
    from harness.report.progress import ProgressDisplay
    from harness.measure.run import run_workload

    report_failed: list[Exception] = []
    committed: list[Path] = []

    def present(folder: Path) -> None:
        """The report and its artifacts, from the committed folder (the runtime is still up)."""
        from harness.report.run_report import write_report

        committed.append(folder)
        try:
            write_report(folder)
        except Exception as exc:  # noqa: BLE001 - any failure: the measurements are safe, say how to retry
            report_failed.append(exc)
            return
        from harness.report.artifacts import publish as publish_artifacts

        try:  # the report in the Prefect UI too; a run is not lost for want of an artifact
            _say(f"report artifacts on flow run {publish_artifacts(folder)}")
        except Exception as exc:  # noqa: BLE001 - any failure: say so, keep the run
            _say(f"could not publish the report artifacts to Prefect: {exc}")

    try:
        with ProgressDisplay() as display:  # draws only when stderr is a terminal
            folder = run_workload(spec, Path(args.out), profile=args.profile,
                                  allow_setting_loss=args.allow_setting_loss, on_event=_say, progress=display.stage,
                                  on_committed=present, worker_timeout_s=args.worker_timeout,
                                  connect_timeout_s=args.connect_timeout,
                                  dask_report=args.dask_report, quiet_prefect=args.quiet_prefect,
                                  on_stage=display.startup)
    except KeyboardInterrupt:
        if not committed:
            raise  # main: "no run folder was written"
        # After the measurements were written (while the report was drawn, or the runtime
        # stopped): the folder is complete and stays; say so, not that nothing was written.
        print(f"harness: interrupted after the run folder was written: {committed[0]}; if its report "
              f"is missing, draw it with: harness report {committed[0]}", file=sys.stderr)
        return 130
    if report_failed:
        exc = report_failed[0]
        print(f"harness: error: the run's data is complete in {folder}, but its report failed: "
              f"{type(exc).__name__}: {exc}\nre-render it with: harness report {folder}", file=sys.stderr)
        print(folder)  # stdout's last line is the run folder, as on success
        return 1
    print((folder / "report.md").read_text())
    print(folder)
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report.run_report import write_report

    path = write_report(Path(args.run_dir))  # checks the folder first (records.read_run_folder)
    print(path.read_text())
    print(path)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.report.compare import compare_runs
    from harness.report.run_report import markdown_table

    result = compare_runs(Path(args.run_a), Path(args.run_b), args.threshold, force=args.force)
    if args.json:
        import json

        print(json.dumps(result.as_dict(), indent=2))
        return 1 if result.regressed else 0
    if result.differences:
        print("compared anyway (--force), but A and B are not like for like:\n"
              + "\n".join(f"  {d}" for d in result.differences) + "\n")
    print(f"A: {result.a}\nB: {result.b}\nregression: B / A > {1 + result.threshold:.2f} and B slower by the one-sided "
          "exact Mann-Whitney test at 5 %, Holm-corrected over the strategies; 95 % CI: the ratio's interval\n")
    print(markdown_table(result.frame()))
    for side, names in (("A", result.only_in_a), ("B", result.only_in_b)):
        if names:
            print(f"\nonly in {side} (not compared): {', '.join(names)}")
    for warning in result.load_warnings:
        print(f"\nwarning: {warning}")
    regressed = [c.strategy for c in result.changes if c.regressed]
    print(f"\nregressed: {', '.join(regressed)}" if regressed else "\nno significant regression")
    return 1 if regressed else 0


def cmd_ui(args: argparse.Namespace) -> int:
    import time

    from harness.runtime.ui import own_databases, serve_ui, ui_url

    _say(f"starting the Prefect UI over {Path(args.results_dir) / '.prefect'}")
    try:
        with serve_ui(Path(args.results_dir), args.port, args.run) as server:
            print(f"Prefect UI: {ui_url(server)}  (API {server.api_url}; Ctrl-C stops it)", flush=True)
            others = [r for r in own_databases(Path(args.results_dir)) if r != args.run]
            if others:
                print(f"runs with a database of their own (harness ui {args.results_dir} --run RUN_ID): "
                      f"{', '.join(others)}", flush=True)
            while server.process.poll() is None:
                time.sleep(UI_POLL_S)
            tail = server.log_path.read_text(errors="replace")[-2000:]
    except KeyboardInterrupt:  # the way to stop it: the server is stopped on the way out
        return 0
    raise RunError(f"the Prefect server exited; its log ends with:\n{tail}")


# How often `ui` checks that its server is still up while it waits for Ctrl-C.
UI_POLL_S = 0.5


def cmd_history(args: argparse.Namespace) -> int:
    from harness.report.history import frame, history, write_index
    from harness.report.run_report import markdown_table

    h = history(Path(args.results_dir))
    for folder, why in h.skipped:
        _say(f"skipped {folder}: {why.removeprefix(str(folder) + '/')}")
    index = write_index(h)
    print(markdown_table(frame(h)))
    print(index)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from harness.workload.spec import json_schema

    print(json_schema())
    return 0


def cmd_table(args: argparse.Namespace) -> int:
    from harness.report.bench_table import render, table, table_json

    if args.json:
        import json

        print(json.dumps(table_json([Path(d) for d in args.run_dirs]), indent=2))
        return 0
    print(render(table([Path(d) for d in args.run_dirs])))
    return 0


# ---------------------------------------------------------------- the bundled workloads

# Where `run --list` looks, under the current directory and under the checkout the package was
# imported from (an editable install's repository): the README's commands run from either.
WORKLOAD_DIRS = ("workloads", "workloads/bench")
SUMMARY_MAX_CHARS = 80  # with the longest bundled path beside it, one line of a 120-column terminal


@dataclass(frozen=True)
class BundledWorkload:
    path: Path  # as the user would type it: relative to the current directory when under it
    summary: str


def _workload_files() -> list[Path]:
    roots = (Path.cwd(), Path(__file__).resolve().parent.parent)
    seen: set[Path] = set()
    files: list[Path] = []
    for root in roots:
        for folder in WORKLOAD_DIRS:
            for path in sorted((root / folder).glob("*.toml")):
                if path.resolve() not in seen:
                    seen.add(path.resolve())
                    files.append(path)
    return files


def _shown(path: Path) -> Path:
    try:
        return path.relative_to(Path.cwd())
    except ValueError:
        return path


def _summary(path: Path) -> str:
    """The file's `description` up to its first clause, else its leading comment, else name and
    item count: read with tomllib alone, so listing stays fast and a broken file still lists."""
    text = path.read_text(encoding="utf-8", errors="replace")
    comment = []
    for line in text.splitlines():
        if not line.startswith("#"):
            break
        comment.append(line.lstrip("#").strip())
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        return f"(not valid TOML: {exc})"
    summary = str(data.get("description") or " ".join(comment)).strip()
    for stop in ("; ", "? ", ". "):
        summary = summary.split(stop)[0]
    summary = summary.rstrip(".")
    if not summary:
        items = data.get("items")
        count = items.get("count") if isinstance(items, dict) else None
        summary = str(data.get("name", path.stem)) + (f": {count:,} items" if isinstance(count, int) else "")
    if len(summary) > SUMMARY_MAX_CHARS:
        summary = summary[: SUMMARY_MAX_CHARS - 1].rstrip() + "…"
    return summary


def bundled_workloads() -> list[BundledWorkload]:
    """The TOML files in workloads/ and workloads/bench/, each with a one-line summary."""
    return [BundledWorkload(_shown(path), _summary(path)) for path in _workload_files()]


def workload_listing() -> str:
    workloads = bundled_workloads()
    if not workloads:
        return ("no workloads/ folder in the current directory or next to the harness package: "
                "write a workload file (README, \"Workload files\") and pass its path to `harness run`")
    width = max(len(str(w.path)) for w in workloads)
    return "\n".join(f"{str(w.path):<{width}}  {w.summary}" for w in workloads)


class _ListWorkloads(argparse.Action):
    """`run --list`: prints the bundled workloads and exits 0 before WORKLOAD is required."""

    def __init__(self, option_strings: list[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        print(workload_listing())
        parser.exit()


# ---------------------------------------------------------------- the parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("prefect-dask-harness")  # the distribution's name (pyproject.toml); the package is `harness`
    except PackageNotFoundError:  # run from a checkout without installing it
        from harness import __version__

        return __version__


def _workloads_epilog(full: bool) -> str:
    if not full:
        return "bundled workloads:\n  harness run --list   lists workloads/ and workloads/bench/, one line each"
    by_folder: dict[str, list[str]] = {}
    for path in _workload_files():
        by_folder.setdefault(str(_shown(path.parent)) + "/", []).append(path.name)
    if not by_folder:
        return "bundled workloads: none found here (harness run --list says where it looks)"
    lines = ["bundled workloads (harness run --list describes each):"]
    for folder, names in by_folder.items():
        lines += textwrap.wrap(", ".join(names), width=92, initial_indent=f"  {folder} ",
                               subsequent_indent="    ")
    return "\n".join(lines)


def _epilog(examples: list[tuple[str, str]], *, full_workloads: bool = False) -> str:
    shown = "\n".join(f"  # {why}\n  {command}" for command, why in examples)
    return "\n\n".join([f"examples:\n{shown}", _workloads_epilog(full_workloads), EXIT_CODES, RESULTS])


def _subcommand(sub: argparse._SubParsersAction, name: str, purpose: str,
                examples: list[tuple[str, str]], handler, *, full_workloads: bool = False) -> argparse.ArgumentParser:
    """One subcommand: its one-line purpose in the command list and atop its own --help, its
    examples, exit codes and where results go below it."""
    parser = sub.add_parser(name, help=purpose, description=purpose,
                            epilog=_epilog(examples, full_workloads=full_workloads),
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.set_defaults(handler=handler)
    return parser


PURPOSE = "Benchmark how a Prefect 3 flow's map should be batched on Dask: static batches against adaptive."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="harness",
        description=f"{PURPOSE}\n(`harness` and `python -m harness` are the same command.)",
        epilog=_epilog([
            ("harness run workloads/small.toml", "a first look, about a minute"),
            ("harness run workloads/large.toml", "the headline: 200,000 fine-grained items, 6-8 min"),
            ("harness compare results/small/RUN_ID results/small/latest", "did the newer run regress?"),
        ], full_workloads=True),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"harness {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = _subcommand(sub, "run", "run a workload under every strategy and write a report", [
        ("harness run workloads/small.toml", "every strategy in the file, about a minute"),
        ("harness run workloads/medium.toml --quick --strategies per_item,static:64,adaptive", "one repeat, three strategies"),
        ("harness run --list", "the bundled workloads, one line each"),
    ], cmd_run, full_workloads=True)
    run.add_argument("workload", help="the workload TOML file")
    run.add_argument("--list", action=_ListWorkloads, help="list the bundled workloads and exit")
    run.add_argument("--out", default="results", help="results folder (default: results/)")
    run.add_argument("--strategies", help="comma-separated, overrides [run] strategies (e.g. per_item,static:64,adaptive)")
    run.add_argument("--repeats", type=_repeats_arg, metavar="N|auto",
                     help='overrides [run] repeats: a count, or "auto" (the default): rounds until adaptive\'s '
                          "ratios settle within ±10 %% (or lie beyond 2x), within the budget")
    run.add_argument("--budget", type=float, metavar="SECONDS",
                     help="overrides [run] budget_s: at most this long in measured rounds for --repeats auto "
                          "(default 600)")
    run.add_argument("--dask-address", help="run on this existing Dask scheduler (tcp://host:port or tls://host:port)")
    run.add_argument("--dask-security", metavar="FILE",
                     help="for a tls:// scheduler: a TOML file with ca_file, cert and key (PEM paths), "
                          "as [cluster] security takes them")
    run.add_argument("--dask-report", action="store_true",
                     help="write a Dask performance report per strategy (its first repeat) into the run folder, "
                          "linked from report.html; the figures then include its cost")
    # harness.runtime.WORKER_WAIT_TIMEOUT_S, spelled out for the same reason as --threshold's.
    run.add_argument("--worker-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="with --dask-address: how long to wait for a first worker (default 30)")
    # harness.runtime.SCHEDULER_CONNECT_TIMEOUT_S, spelled out likewise.
    run.add_argument("--connect-timeout", type=float, default=10.0, metavar="SECONDS",
                     help="with --dask-address: how long the scheduler may take to answer (default 10)")
    run.add_argument("--quick", action="store_true", help="one repeat, no sweep: a first look")
    run.add_argument("--profile", default=None, choices=("lean", "stock"),
                     help="how Prefect context reaches Dask workers (default: lean for the synthetic [cost] "
                          "workloads, stock for a user's [task]; stock = prefect-dask as released)")
    run.add_argument("--allow-setting-loss", action="store_true",
                     help="under lean, run even if a Prefect setting differs between this process and the workers "
                          "(env.json lists the settings lost)")
    run.add_argument("--quiet-prefect", action="store_true",
                     help="Prefect logs at WARNING and none sent to the API, also on your own Prefect API "
                          "(without it the harness changes no logging setting there)")

    report = _subcommand(sub, "report", "re-render report.md and report.html from a run folder's CSVs", [
        ("harness report results/small/latest", "after a harness upgrade, or an edited CSV"),
        ("harness report results/large/RUN_ID", "any run folder: runs.csv, trace.csv, env.json"),
    ], cmd_report)
    report.add_argument("run_dir", metavar="RUN_DIR", help="a run folder (holds runs.csv, trace.csv and env.json)")

    compare = _subcommand(sub, "compare", "per-strategy change from RUN_A to RUN_B; exit 1 on a significant regression", [
        ("harness compare results/small/RUN_ID results/small/latest", "B against the baseline A"),
        ("harness compare RUN_A RUN_B --threshold 0.25", "only a slow-down over 25 % counts"),
    ], cmd_compare)
    compare.add_argument("run_a", metavar="RUN_A", help="the baseline run folder")
    compare.add_argument("run_b", metavar="RUN_B", help="the run folder to judge")
    # compare.DEFAULT_THRESHOLD, spelled out: importing harness.report.compare here would load pandas and
    # scipy (~1.3 s) before a bad argument could even be reported.
    compare.add_argument("--force", action="store_true",
                         help="compare runs that are not like for like (workload, profile, layout, machine, "
                              "packages), listing the differences above the table")
    compare.add_argument("--json", action="store_true", help="print the comparison as JSON (schema harness.compare/1)")
    compare.add_argument("--threshold", type=float, default=0.10,
                         help="slow-down that counts as a regression, as a fraction (default 0.10 = 10 %%)")

    across = _subcommand(sub, "table", "one line per run folder: adaptive against every reference (README's table)", [
        ("harness table results/bench/bench-*/latest", "the README's benchmark table"),
        ("harness table results/small/latest results/medium/latest", "any run folders"),
    ], cmd_table)
    across.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run folders, e.g. results/<workload>/latest")
    across.add_argument("--json", action="store_true", help="print each run's results.json figures as a JSON array")

    ui = _subcommand(sub, "ui", "serve the Prefect UI over the runs kept in a results folder, until Ctrl-C", [
        ("harness ui results", "flow runs, task runs, artifacts and logs of every run into results/"),
        ("harness ui /tmp/out --port 4300", "on a port of your choice"),
    ], cmd_ui)
    ui.add_argument("results_dir", metavar="RESULTS_DIR", help="a results folder (run's --out, default results/)")
    ui.add_argument("--port", type=int, help="the UI's loopback port (default: any free one)")
    ui.add_argument("--run", metavar="RUN_ID",
                    help="a run that kept a database of its own (it ran while another run used the folder's)")

    past = _subcommand(sub, "history", "every run under RESULTS_DIR across commits: a table, trend plots, index.html", [
        ("harness history results", "every workload's runs, oldest first, step changes marked"),
        ("harness history /tmp/ci-results", "any folder of <workload>/<run id>/ run folders"),
    ], cmd_history)
    past.add_argument("results_dir", metavar="RESULTS_DIR",
                      help="a results folder: <workload>/<run id>/ folders with runs.csv and env.json")

    _subcommand(sub, "schema", "print the workload file's JSON Schema, for an editor's TOML support", [
        ("harness schema > harness-workload.schema.json", "then point the editor at it (README, \"Workload files\")"),
        ("harness schema | python3 -m json.tool | less", "read what every table and key accepts"),
    ], cmd_schema)
    return parser


def _interrupt(signum: int, frame: object) -> None:
    _interrupted.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    # SIGTERM unwinds like Ctrl-C, so the server and cluster we started are stopped and no
    # half-written run folder is left (the default action would kill us mid-write).
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    _interrupted.clear()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on bad usage, 0 on --help
        return int(exc.code or 0)
    try:
        return args.handler(args)
    except HarnessError as exc:
        print(f"harness: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("harness: interrupted; no run folder was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - anything else: one line for the user, the traceback to a file
        log = _write_traceback(args)
        print(f"harness: error: {args.command} failed: {type(exc).__name__}: {exc}\n"
              f"the traceback is in {log}; include that file when you report this", file=sys.stderr)
        return 1


def _write_traceback(args: argparse.Namespace) -> Path | str:
    """The current exception's traceback in <cache>/logs/<time>.log, and that path ("(not
    written: why)" when even that fails)."""
    import time
    import traceback

    try:
        from harness.runtime.cache import cache_dir

        folder = cache_dir() / "logs"
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
        path.write_text(f"harness {' '.join(sys.argv[1:]) or args.command}\n\n{traceback.format_exc()}")
        return path
    except Exception as exc:  # noqa: BLE001 - the message still goes out, without its log
        return f"(not written: {exc})"
