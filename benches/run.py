"""`make bench`: run every benchmark, print the table, keep the figures, draw the chart, update the doc.

    python -m benches.run                    # everything (about 25 minutes on 2 cores)
    python -m benches.run --only ack,finance # some sections (written to results/partial-*.json only)
    python -m benches.run --render           # redraw chart and doc table from results/latest.json

Writes `benches/results/<UTC time>.json` (kept: the history of runs) and, after a full run,
`benches/results/latest.json`, `benches/results/chart.png` and the generated block of
`docs/performance.md` (between its `bench:results` markers; the prose around it is left alone).
A section that cannot run (no PostgreSQL, a command not written yet, a crash) reports its figures as
"not measured: <reason>" instead of a number. Exit code: 0 when every section ran (targets met or not;
`--strict` also fails on a missed target), 1 when a section crashed.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from datetime import UTC, datetime
from pathlib import Path

from benches.common import RESULTS, ROOT, Figure, log, write_json

SECTIONS = ("ack", "worker", "campaign", "finance")
DOC = ROOT / "docs" / "performance.md"
CHART = RESULTS / "chart.png"
BEGIN, END = "<!-- bench:results:begin -->", "<!-- bench:results:end -->"


def _section(name: str):
    from benches import bench_ack, bench_campaign, bench_finance, bench_worker

    return {"ack": bench_ack, "worker": bench_worker, "campaign": bench_campaign, "finance": bench_finance}[name]


def run_section(name: str, workdir: Path, attempts: int = 2) -> tuple[list[Figure], dict]:
    """One section's figures; tried again once after a crash (a machine shared with other work can
    stall for minutes); a second crash becomes a 'not measured' figure carrying the error."""
    started, load = time.monotonic(), os.getloadavg()
    errors: list[str] = []
    figures: list[Figure] = []
    for attempt in range(1, attempts + 1):
        try:
            figures = _section(name).run(workdir)
            break
        except Exception as exc:  # report it in the table, keep the other sections
            traceback.print_exc()
            errors.append(f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}")
            if attempt < attempts:
                log(f"{name}: crashed ({errors[-1]}); trying the section again in 30 s")
                time.sleep(30)
    else:
        figures = [
            Figure.missing(
                f"{name}.error",
                name.capitalize(),
                "all figures of this section",
                f"the benchmark crashed ({errors[-1]}); logs in {workdir}",
            )
        ]
    error = errors[-1] if len(errors) == attempts else None
    meta = {
        "seconds": round(time.monotonic() - started, 1),
        "load_average_before": [round(x, 2) for x in load],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "error": error,
        "crashed_attempts": errors,
    }
    log(f"{name}: done in {meta['seconds']:.0f} s")
    return figures, meta


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def table_rows(figures: list[Figure]) -> list[tuple[str, ...]]:
    return [(f.bench, f.name, f.shown_value(), f.target or "", f.shown_status(), f.note) for f in figures]


def print_table(figures: list[Figure]) -> None:
    headers = ("benchmark", "figure", "value", "target", "status", "note")
    rows = table_rows(figures)
    widths = [min(70, max(len(h), *(len(r[i]) for r in rows))) for i, h in enumerate(headers[:-1])]
    line = lambda cells: "  ".join(c.ljust(w)[:w] for c, w in zip(cells, widths, strict=False))  # noqa: E731
    print()
    print(line(headers[:-1]))
    print(line(tuple("-" * w for w in widths)))
    for row in rows:
        print(line(row[:-1]))
        if row[-1]:
            print(" " * (widths[0] + 2) + "  " + row[-1])
    met = sum(f.met is True for f in figures)
    missed = sum(f.met is False for f in figures)
    unmeasured = sum(f.not_measured is not None for f in figures)
    print(f"\ntargets met: {met}, missed: {missed}, not measured: {unmeasured}\n")


def markdown_table(figures: list[Figure]) -> str:
    out = ["| benchmark | figure | value | target | status | note |", "|---|---|---|---|---|---|"]
    for row in table_rows(figures):
        cells = [c.replace("|", "\\|") for c in row]
        status = cells[4]
        cells[4] = f"**{status}**" if status == "MISSED" else status
        out.append("| " + " | ".join(cells) + " |")
    return "\n".join(out)


def update_doc(figures: list[Figure], data: dict) -> None:
    """Replace the generated block of docs/performance.md (create the doc around it if missing)."""
    machine = data["machine"]
    block = "\n".join(
        [
            BEGIN,
            f"_Generated by `make bench` on {data['run_at']} (commit `{data['git_commit'][:10]}`"
            f"{', with uncommitted changes' if data['git_dirty'] else ''}); {machine['cpus']} CPUs, "
            f"Python {machine['python']}, load average {machine['load_average_start'][0]:.1f} at the start and "
            f"{machine['load_average_end'][0]:.1f} at the end. Raw figures: "
            f"[`benches/results/{data['file']}`](../benches/results/{data['file']})._",
            "",
            markdown_table(figures),
            "",
            "![Benchmark chart](../benches/results/chart.png)",
            END,
        ]
    )
    if DOC.exists():
        text = DOC.read_text()
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n## Latest results\n\n" + block + "\n"
    else:
        text = "# Performance\n\n## Latest results\n\n" + block + "\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated sections of {', '.join(SECTIONS)}")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs, databases)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument(
        "--render",
        action="store_true",
        help="measure nothing: redraw the chart and the doc's table from results/latest.json",
    )
    args = parser.parse_args(argv)
    if args.render:
        import json

        data = json.loads((RESULTS / "latest.json").read_text())
        figures = [Figure(**f) for f in data["figures"]]
        from benches.chart import draw

        draw(data, CHART)
        update_doc(figures, data)
        print_table(figures)
        return 0
    sections = [s.strip() for s in args.only.split(",")] if args.only else list(SECTIONS)
    unknown = [s for s in sections if s not in SECTIONS]
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")

    def interrupted(signum, _frame):
        # Unwind through every `finally`, so servers are stopped and benchmark databases dropped.
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started in the background, where SIGINT is ignored
    workdir = Path(tempfile.mkdtemp(prefix="webhook-bench-"))
    log(f"work directory (logs): {workdir}")
    run_at = datetime.now(UTC).replace(microsecond=0)
    load_start = os.getloadavg()
    figures: list[Figure] = []
    meta: dict[str, dict] = {}
    for name in sections:
        log(f"== {name} ==")
        section_figures, meta[name] = run_section(name, workdir)
        figures.extend(section_figures)

    full = sections == list(SECTIONS)
    stamp = run_at.strftime("%Y%m%dT%H%M%SZ")
    file = f"{stamp}.json" if full else f"partial-{stamp}.json"
    data = {
        "run_at": run_at.isoformat(),
        "file": file,
        "sections": meta,
        "git_commit": _git("rev-parse", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--", "webhook_app")),
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "figures": [f.as_dict() for f in figures],
    }
    write_json(RESULTS / file, data)
    if full:
        write_json(RESULTS / "latest.json", data)
        try:
            from benches.chart import draw

            draw(data, CHART)
        except Exception:  # no chart is no reason to lose the figures
            traceback.print_exc()
            log("chart: not drawn (see the error above)")
        update_doc(figures, data)
        log(f"wrote benches/results/{file}, latest.json, chart.png and docs/performance.md")
    else:
        log(f"wrote benches/results/{file} (partial run: latest.json, the chart and the doc are unchanged)")
    print_table(figures)
    crashed = any(m["error"] for m in meta.values())
    if not args.keep and not crashed:
        shutil.rmtree(workdir, ignore_errors=True)
    if crashed:
        return 1
    if args.strict and any(f.met is False for f in figures):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
