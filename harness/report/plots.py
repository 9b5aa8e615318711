"""The report's pictures, as PNG files beside it (matplotlib, Agg: no display needed).

Each function takes the numbers it draws and a path, writes one PNG and returns its path, or
None when the run has nothing to draw (no sweep, no adaptive trace).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # before pyplot: render to files, never look for a display
import matplotlib.pyplot as plt
import pandas as pd

from harness.report.advice import NEAR_OPTIMAL_FRACTION
from harness.workload.vocabulary import RAW_DASK, STATIC, StrategyKind

# Small enough to sit beside the table in a browser, sharp enough to read the ticks.
FIGSIZE = (7.5, 4.0)
DPI = 110


def _save(fig: plt.Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=DPI)
    plt.close(fig)
    return path


def plot_walls(table: pd.DataFrame, samples: dict[str, list[float]], path: Path) -> Path:
    """Median wall per strategy (bar) with its interquartile range, and every repeat as a dot."""
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], max(2.5, 0.45 * len(table) + 1)))
    order = table.sort_values("wall_s", ascending=False)
    y = range(len(order))
    err = [order["wall_s"] - order["q1_s"], order["q3_s"] - order["wall_s"]]
    ax.barh(list(y), order["wall_s"], xerr=err, color="#9ecae1", ecolor="#08519c", capsize=4)
    for i, strategy in enumerate(order.index):
        ax.plot(samples[strategy], [i] * len(samples[strategy]), "o", color="#08519c", ms=3)
    ax.set_yticks(list(y), list(order.index))
    ax.set_xscale("log" if order["wall_s"].max() > 20 * order["wall_s"].min() else "linear")
    ax.set_xlabel("wall time, s (whole workload; bar = median, whiskers = IQR, dots = repeats)")
    ax.set_title("Wall time per strategy (shorter is better)")
    return _save(fig, path)


def _sized(table: pd.DataFrame, kind: StrategyKind) -> pd.DataFrame:
    """The rows of `kind` (static:N, raw_dask:N) with their batch size N as column "n", by N."""
    sizes = {name: strategy.batch_size for name in table.index if (strategy := kind.read(name)) is not None}
    rows = table.loc[list(sizes)].copy()
    rows["n"] = [sizes[name] for name in rows.index]
    return rows.sort_values("n")


# per_item is drawn as a point only when its wall is within this factor of the slowest other
# point: beyond it (3,269 s against ~100 s on large.toml) it would squash every other line
# into the bottom of a log axis, so it becomes a labelled note at the top edge instead.
PER_ITEM_ON_SCALE_FACTOR = 10.0


def sweep_figure(table: pd.DataFrame, band: tuple[int, ...] = ()) -> plt.Figure | None:
    """Wall against batch size for static:N (and raw_dask:N), adaptive as a line at its median
    wall and a star at its median batch, per_item as a reference, the near-optimal `band` shaded.
    The caller saves or inspects the figure (plot_sweep saves it)."""
    statics = _sized(table, STATIC)
    if len(statics) < 2 and "adaptive" not in table.index:
        return None
    fig, ax = plt.subplots(figsize=FIGSIZE)
    shown: list[float] = []
    for rows, label, style in ((statics, "static:N (Prefect)", "o-"), (_sized(table, RAW_DASK), "raw_dask:N (no Prefect)", "s--")):
        if len(rows):
            ax.errorbar(rows["n"], rows["wall_s"], yerr=[rows["wall_s"] - rows["q1_s"], rows["q3_s"] - rows["wall_s"]],
                        fmt=style, capsize=3, label=label)
            shown += list(rows["q3_s"])
    if len(band):
        ax.axvspan(min(band) / 1.15, max(band) * 1.15, color="#2ca02c", alpha=0.12,
                   label=f"static sizes within {NEAR_OPTIMAL_FRACTION * 100:g} % of the best")
    if "adaptive" in table.index:
        a = table.loc["adaptive"]
        batch = a["batch_size"]
        label = "adaptive" + (f" (median batch {batch:.0f})" if pd.notna(batch) else "")
        ax.axhline(a["wall_s"], color="#d62728", lw=1.2, ls=":", label=label)
        if pd.notna(batch):
            ax.plot([max(batch, 1)], [a["wall_s"]], "*", color="#d62728", ms=14)
        shown.append(a["wall_s"])
    if "per_item" in table.index:
        wall = table.loc["per_item", "wall_s"]
        if not shown or wall <= PER_ITEM_ON_SCALE_FACTOR * max(shown):
            ax.axhline(wall, color="#7f7f7f", lw=1, ls="--", label=f"per_item ({wall:,.3g} s)")
        else:  # off the scale: say where it is instead of drawing it
            ax.annotate(f"per_item: {wall:,.0f} s, {wall / max(shown):,.0f}× the slowest shown (off the scale)",
                        (0.01, 0.98), xycoords="axes fraction", va="top", fontsize=8, color="#555555")
            ax.plot([], [], "--", color="#7f7f7f", label=f"per_item ({wall:,.0f} s, off the scale)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("batch size (items per task)")
    ax.set_ylabel("wall time, s (median, IQR)")
    ax.set_title("Wall time against batch size")
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    return fig


def plot_sweep(table: pd.DataFrame, path: Path, band: tuple[int, ...] = ()) -> Path | None:
    """sweep_figure saved to `path`; None when there is nothing to draw."""
    fig = sweep_figure(table, band)
    return None if fig is None else _save(fig, path)


def phase_times(trace: pd.DataFrame, items_total: int, phases: list[dict]) -> list[tuple[float, float]]:
    """(time, phase mean_ms) where the finished items of one adaptive repeat first reach each
    phase's `at` fraction: the adaptive strategy streams items in order, so this is when the
    drift reached the workers (to within one window of batches)."""
    done = trace.sort_values("t_s").assign(cum=lambda t: t["items"].cumsum())
    out = []
    for phase in phases:
        reached = done[done["cum"] >= phase["at"] * items_total]
        if len(reached):
            out.append((float(reached["t_s"].iloc[0]), float(phase["mean_ms"])))
    return out


def plot_trace(trace: pd.DataFrame, items_total: int, phases: list[dict], path: Path) -> Path | None:
    """The adaptive controller over time: batch size and throughput per repeat, drift phases marked."""
    rows = trace[trace["strategy"] == "adaptive"] if "strategy" in trace else trace
    if "variant" in rows and (rows["variant"] == "dynamic").any():  # the twin's trace would overdraw it
        rows = rows[rows["variant"] == "dynamic"]
    if rows.empty:
        return None
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(FIGSIZE[0], 5.5), sharex=True)
    for repeat, one in rows.groupby("repeat"):  # runs.csv counts repeats from 0; shown from 1, as everywhere
        one = one.sort_values("t_s")
        line, = top.step(one["t_s"], one["batch_size"], where="post", label=f"repeat {repeat + 1}")
        # Observed: items finished so far / time so far; the controller's own estimate dotted.
        bottom.plot(one["t_s"], one["items"].cumsum() / one["t_s"], color=line.get_color(), lw=1)
        if one["throughput_items_s"].notna().any():
            bottom.plot(one["t_s"], one["throughput_items_s"], color=line.get_color(), lw=1, ls=":")
    first = rows[rows["repeat"] == rows["repeat"].min()]
    for i, (t, mean_ms) in enumerate(phase_times(first, items_total, phases)):
        for ax in (top, bottom):
            ax.axvline(t, color="#555555", ls="--", lw=1)
        top.annotate(f"phase {i + 1}: {mean_ms:g} ms/item", (t, 1), xycoords=("data", "axes fraction"),
                     xytext=(3, -12), textcoords="offset points", fontsize=8)
    top.set_yscale("log")
    top.set_ylabel("batch size")
    marked = f" (drift phases dashed, repeat {first['repeat'].iloc[0] + 1})" if phases else ""
    top.set_title("Adaptive: batch size and throughput over time" + marked)
    top.legend(fontsize=8)
    bottom.set_ylabel("items/s so far\n(dotted: controller's estimate)")
    bottom.set_xlabel("time since the stage started, s")
    return _save(fig, path)


def history_figure(walls: pd.DataFrame, marks: dict[tuple[int, str], str], workload: str) -> plt.Figure:
    """Median wall per strategy (one line each) across runs in order (`walls`: runs as rows,
    labelled by commit), a step change marked ▲ (REGRESSION) or ▼ (faster) where `marks` says."""
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], FIGSIZE[1] + 0.5))
    x = list(range(len(walls)))
    for strategy in walls.columns:
        line, = ax.plot(x, walls[strategy], "o-", ms=4, label=strategy)
        for (i, name), verdict in marks.items():
            if name == strategy:
                ax.plot([i], [walls[strategy].iloc[i]], "^" if verdict == "REGRESSION" else "v", ms=11,
                        color="#d62728" if verdict == "REGRESSION" else "#2ca02c", mec=line.get_color())
    ax.set_xticks(x, list(walls.index), rotation=30, ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_ylabel("median wall, s (whole workload)")
    ax.set_xlabel("run (in start order): commit")
    ax.set_title(f"{workload}: wall time across runs (▲ regression, ▼ faster)")
    ax.legend(fontsize=7, ncols=2, loc="best")
    fig.tight_layout()
    return fig


def plot_history(walls: pd.DataFrame, marks: dict[tuple[int, str], str], workload: str, path: Path) -> Path:
    return _save(history_figure(walls, marks, workload), path)
