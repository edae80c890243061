"""The benchmark chart (matplotlib, PNG), drawn from one run's JSON.

    python -m benches.chart benches/results/latest.json benches/results/chart.png

Six panels: ack throughput against the floor; ack p99 at the same offered load; worker and campaign
rates against their limits; the finance dashboard per view against 300 ms; the CSV export's RSS over
time against 150 MB; and every figure divided by its target (met to the right of 1).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

GREEN, RED, GREY, BLUE = "#2e7d32", "#c62828", "#9e9e9e", "#1565c0"


def _by_key(data: dict) -> dict[str, dict]:
    return {f["key"]: f for f in data["figures"]}


def _median_run(runs: list[dict | None], key) -> dict:
    ordered = sorted((r for r in runs if r), key=key)
    return ordered[len(ordered) // 2]


def _colour(figure: dict | None) -> str:
    if not figure or figure.get("met") is None:
        return GREY
    return GREEN if figure["met"] else RED


def _missing(ax, title: str, reason: str) -> None:
    ax.set_title(title, fontsize=10)
    ax.text(
        0.5,
        0.5,
        "not measured:\n" + reason[:120],
        ha="center",
        va="center",
        fontsize=8,
        wrap=True,
        transform=ax.transAxes,
    )
    ax.set_xticks([])
    ax.set_yticks([])


def _ack_throughput(ax, f: dict) -> None:
    title = "Ack path: saturated throughput (req/s)"
    floor = f.get("ack.floor.throughput")
    if not floor or floor.get("value") is None:
        return _missing(ax, title, (floor or {}).get("not_measured") or "no ack figures")
    labels, values, colours = ["floor"], [floor["value"]], [GREY]
    for name, label in (
        ("sqlite", "app\nSQLite"),
        ("sqlite_embedded", "+worker\nSQLite"),
        ("postgresql", "app\nPostgreSQL"),
        ("postgresql_embedded", "+worker\nPostgreSQL"),
    ):
        fig = f.get(f"ack.{name}.throughput_ratio")
        if fig and fig.get("value") is not None:
            runs = fig["detail"]["saturation_rounds"]
            labels.append(label)
            values.append(_median_run(runs, lambda r: r["throughput"])["throughput"])
            colours.append(_colour(fig))
    naive = f.get("ack.naive.throughput")
    if naive and naive.get("value") is not None:
        labels.append("naive\n(inline)")
        values.append(naive["value"])
        colours.append(GREY)
    bars = ax.bar(labels, values, color=colours)
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.axhline(0.8 * floor["value"], color=BLUE, ls="--", lw=1, label="0.8 × floor (SQLite target)")
    ax.axhline(0.7 * floor["value"], color=BLUE, ls=":", lw=1, label="0.7 × floor (PostgreSQL target)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper right")


def _ack_latency(ax, f: dict) -> None:
    title = "Ack path: p99 latency at the same offered load (ms)"
    floor = f.get("ack.floor.throughput")
    if not floor or floor.get("value") is None:
        return _missing(ax, title, (floor or {}).get("not_measured") or "no ack figures")
    floor_p99 = _median_run(floor["detail"]["fixed_rounds"], lambda r: r["latency_ms"]["p99"])["latency_ms"]
    labels, p50, p99, colours = ["floor"], [floor_p99["p50"]], [floor_p99["p99"]], [GREY]
    rate = None
    for name, label in (
        ("sqlite", "SQLite"),
        ("sqlite_embedded", "SQLite\n+worker"),
        ("postgresql", "PostgreSQL"),
        ("postgresql_embedded", "PostgreSQL\n+worker"),
    ):
        fig = f.get(f"ack.{name}.p99_ratio")
        if fig and fig.get("value") is not None:
            run = _median_run(fig["detail"]["fixed_rounds"], lambda r: r["latency_ms"]["p99"])
            rate = fig["detail"].get("offered_rate")
            labels.append(label)
            p50.append(run["latency_ms"]["p50"])
            p99.append(run["latency_ms"]["p99"])
            colours.append(_colour(fig))
    x = range(len(labels))
    ax.bar([i - 0.2 for i in x], p50, width=0.4, color="#bdbdbd", label="p50")
    bars = ax.bar([i + 0.2 for i in x], p99, width=0.4, color=colours, label="p99")
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.axhline(2 * floor_p99["p99"], color=BLUE, ls="--", lw=1, label="2 × floor p99 (target)")
    ax.set_xticks(list(x), labels)
    ax.set_title(title + (f", {rate:.0f} req/s" if rate else ""), fontsize=10)
    ax.legend(fontsize=7)


def _rates(ax, f: dict) -> None:
    title = "Worker and campaign: achieved rate vs its bound (/s)"
    rows = []
    for key, label, bound, _bound_label in (
        ("worker.rate.default", "worker, default threads,\nno limit", 30, "target 30/s"),
        ("worker.rate.wide", "worker, more threads,\nno limit", 30, "target 30/s"),
        ("worker.limited.ratio", "worker, Loops\n10 req/s", 9, "0.9 × 10"),
        ("campaign.rate", "campaign 10k,\ndefault pacing", 22.5, "0.9 × 25"),
        ("campaign.at_limit.rate", "campaign 1k,\npaced at 25", 22.5, "0.9 × 25"),
    ):
        fig = f.get(key)
        if not fig:
            continue
        value = fig.get("value")
        if value is not None and fig["unit"] == "×":
            value = value * (10 if key.startswith("worker") else 25)
        rows.append((label, value, bound, _colour(fig)))
    if not rows:
        return _missing(ax, title, "no worker or campaign figures")
    labels = [r[0] for r in rows]
    bars = ax.barh(labels, [r[1] or 0 for r in rows], color=[r[3] for r in rows])
    ax.bar_label(bars, labels=[f"{r[1]:.1f}" if r[1] is not None else "not measured" for r in rows], fontsize=8)
    for i, r in enumerate(rows):
        ax.plot([r[2], r[2]], [i - 0.4, i + 0.4], color=BLUE, lw=2)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=7)
    ax.set_title(title + "; blue tick = target", fontsize=10)


def _dashboard(ax, f: dict) -> None:
    title = "Finance dashboard, 1M ledger rows: per-view latency (ms)"
    fig = f.get("finance.dashboard.p95")
    if not fig or fig.get("value") is None:
        return _missing(ax, title, (fig or {}).get("not_measured") or "not run")
    views = fig["detail"]["dashboard"]["views"]
    labels = list(views)
    y = range(len(labels))
    ax.barh([i - 0.2 for i in y], [views[v]["p50_ms"] for v in labels], height=0.4, color="#bdbdbd", label="p50")
    bars = ax.barh(
        [i + 0.2 for i in y],
        [views[v]["p95_ms"] for v in labels],
        height=0.4,
        color=[GREEN if views[v]["p95_ms"] <= 300 else RED for v in labels],
        label="p95",
    )
    ax.bar_label(bars, fmt="%.0f", fontsize=8)
    ax.axvline(300, color=BLUE, ls="--", lw=1, label="300 ms (p95 target)")
    ax.set_yticks(list(y), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


def _csv_memory(ax, f: dict) -> None:
    title = "Finance CSV export of all rows: worker RSS (MB)"
    fig = f.get("finance.csv.rss")
    if not fig or fig.get("value") is None:
        return _missing(ax, title, (fig or {}).get("not_measured") or "not run")
    export = fig["detail"]["export"]
    samples = export["rss_samples_kb"]
    ax.plot(
        [s[0] for s in samples],
        [s[1] / 1024 for s in samples],
        color=_colour(fig),
        lw=1.5,
        label=f"RSS sampled every 0.2 s (peak {fig['value']:.0f} MB)",
    )
    ax.axhline(150, color=BLUE, ls="--", lw=1, label="150 MB (target)")
    ax.set_ylim(0, max(170, fig["value"] * 1.2))
    ax.set_xlabel(f"seconds ({export['rows']:,} rows)", fontsize=8)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")


def _summary(ax, data: dict) -> None:
    rows = []
    for fig in data["figures"]:
        target = fig.get("target")
        if not target or fig.get("not_measured") or fig.get("value") is None:
            continue
        op, threshold = target.split()
        threshold = float(threshold)
        value = fig["value"]
        if op == ">=":
            score = value / threshold
        elif op == "<=":
            score = threshold / value if value else 10
        else:  # == 0: met or not
            score = 1.0 if fig["met"] else 0.0
        rows.append((f"{fig['bench']}: {fig['name']}"[:80], min(score, 3.0), _colour(fig)))
    if not rows:
        return _missing(ax, "Every figure against its target", "nothing measured")
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color=[r[2] for r in rows])
    ax.axvline(1.0, color=BLUE, lw=1)
    ax.invert_yaxis()
    ax.tick_params(axis="y", labelsize=6.5)
    ax.set_xlabel("headroom: value / target (or target / value for upper bounds); ≥ 1 is met; capped at 3", fontsize=7)
    ax.set_title("Every figure against its target", fontsize=10)


def draw(data: dict, path: Path) -> None:
    """Draw the chart for one run's data to `path` (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    f = _by_key(data)
    fig, axes = plt.subplots(3, 2, figsize=(15, 15))
    _ack_throughput(axes[0][0], f)
    _ack_latency(axes[0][1], f)
    _rates(axes[1][0], f)
    _dashboard(axes[1][1], f)
    _csv_memory(axes[2][0], f)
    _summary(axes[2][1], data)
    fig.suptitle(
        f"webhook_app benchmarks, {data['run_at']} ({data['machine']['cpus']} CPUs); "
        "green = target met, red = missed, grey = no target",
        fontsize=12,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    source = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json"
    target = Path(sys.argv[2]) if len(sys.argv) > 2 else Path(__file__).parent / "results" / "chart.png"
    draw(json.loads(source.read_text()), target)
    print(target)
