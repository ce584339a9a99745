"""Benchmark table: each rule's jobs in a finished run, from Snakemake's benchmark files.

Every job of the workflow writes ``{results_dir}/benchmarks/<rule>/....tsv`` (wall
seconds, peak resident memory). This sums them per rule (jobs, seconds each, total,
largest peak) and prints a Markdown table; with ``--doc FILE --name NAME`` it replaces
the block between ``<!-- job_times NAME -->`` and ``<!-- /job_times NAME -->`` in FILE,
so that the tables in docs/scaling.md are written by this command, not retyped:

    .venv/bin/python tools/job_times.py results/demo --doc docs/scaling.md --name demo
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd


def job_table(results_dir: Path) -> pd.DataFrame:
    """One row per rule: jobs, mean and total wall seconds, largest peak RSS (MB)."""
    rows = []
    for path in sorted((results_dir / "benchmarks").glob("*/**/*.tsv")):
        rule = path.relative_to(results_dir / "benchmarks").parts[0]
        last = pd.read_csv(path, sep="\t").iloc[-1]  # the job's last run
        rss = pd.to_numeric(last["max_rss"], errors="coerce")  # "-" where none was read
        rows.append({"rule": rule, "s": float(last["s"]), "rss": rss})
    if not rows:
        raise SystemExit(f"no benchmark files under {results_dir}/benchmarks: run the workflow")
    jobs = pd.DataFrame(rows)
    table = jobs.groupby("rule", sort=False).agg(
        jobs=("s", "size"), each_s=("s", "mean"), total_s=("s", "sum"), peak_mb=("rss", "max")
    )
    return table.sort_values("total_s", ascending=False).reset_index()


def markdown(table: pd.DataFrame) -> str:
    shown = table.copy()
    total = {"rule": "all jobs", "jobs": shown["jobs"].sum(), "total_s": shown["total_s"].sum()}
    shown = pd.concat([shown, pd.DataFrame([total])], ignore_index=True)
    shown["each_s"] = shown["each_s"].round(1)
    shown["total_s"] = shown["total_s"].round(1)
    shown["peak_mb"] = shown["peak_mb"].round(0)
    return shown.fillna("").to_markdown(index=False)


def replace_block(text: str, name: str, block: str) -> str:
    """``text`` with the block between the markers of ``name`` replaced by ``block``."""
    start, end = f"<!-- job_times {name} -->", f"<!-- /job_times {name} -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), flags=re.S)
    if not pattern.search(text):
        raise SystemExit(f"no block {start} ... {end} in the document: add the two markers")
    return pattern.sub(lambda _: f"{start}\n{block}\n{end}", text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", type=Path)
    parser.add_argument("--doc", type=Path, help="a Markdown file with the block's markers")
    parser.add_argument("--name", help="the block's name in --doc")
    args = parser.parse_args(argv)
    block = markdown(job_table(args.results_dir))
    print(block)
    if args.doc:
        if not args.name:
            parser.error("--doc needs --name")
        args.doc.write_text(replace_block(args.doc.read_text(), args.name, block))
        print(f"written to {args.doc} ({args.name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
