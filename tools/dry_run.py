"""Plan the shipped configs with each shipped profile and print the job counts per rule.

    .venv/bin/python tools/dry_run.py        # or: make dry-run

Every plan is a `snakemake -n --nolock --configfile CONFIG --profile PROFILE` in a fresh
temporary working directory (so the plan is that of a fresh clone, whatever results/
holds here). A dry run never calls the executor: with the Slurm profile nothing is
submitted, and no Slurm commands are needed. Exits non-zero, with Snakemake's output,
when any plan fails. `plans()` returns {(config, profile): {rule: count}} for the tests.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIGS = ("config/config.yaml", "config/demo.yaml", "experiments/likelihoods.yaml")
PROFILES = ("profiles/local", "profiles/slurm")

# "Job stats:" / header / dashes / "rule   count" lines / "total   N"
JOB_STATS = re.compile(r"^Job stats:\n.*\n-+\s+-+\n((?:\S+\s+\d+\n)+)", re.MULTILINE)


class PlanError(RuntimeError):
    """A dry run failed; the message holds the command and Snakemake's output."""


def job_counts(output: str) -> dict[str, int]:
    """The 'Job stats' table of Snakemake's output as {rule: count}, without 'total'."""
    match = JOB_STATS.search(output)
    if not match:
        raise ValueError("no 'Job stats' table in the output")
    counts = {}
    for line in match.group(1).splitlines():
        rule, count = line.split()
        if rule != "total":
            counts[rule] = int(count)
    return counts


def plan(config: str, profile: str, *extra: str, timeout: int = 300) -> dict[str, int]:
    """Dry-run one config with one profile (paths relative to the repository)."""
    with tempfile.TemporaryDirectory(prefix="scembed-dry-run-") as tmp:
        workdir = Path(tmp)
        # The Snakefile's `configfile: "config/config.yaml"` is relative to the working
        # directory, as are any relative data paths of a config.
        (workdir / "config").symlink_to(REPO / "config", target_is_directory=True)
        cmd = [
            sys.executable,
            "-m",
            "snakemake",
            "-s",
            str(REPO / "workflow" / "Snakefile"),
            "--directory",
            str(workdir),
            "-n",
            "--nolock",
            "--configfile",
            str(REPO / config),
            "--profile",
            str(REPO / profile),
            *extra,
        ]
        try:
            result = subprocess.run(
                cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as err:
            raise PlanError(f"{' '.join(cmd)}\ntimed out after {timeout} s") from err
    output = result.stdout + result.stderr
    if result.returncode != 0:
        raise PlanError(f"{' '.join(cmd)}\nexited {result.returncode}:\n{output}")
    try:
        return job_counts(output)
    except ValueError as err:
        raise PlanError(f"{' '.join(cmd)}\n{err}:\n{output}") from err


def plans(
    configs=CONFIGS, profiles=PROFILES, workers: int = 3
) -> dict[tuple[str, str], dict[str, int]]:
    """{(config, profile): {rule: count}} for every pair; raises PlanError on a failure."""
    pairs = [(config, profile) for config in configs for profile in profiles]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(lambda pair: plan(*pair), pairs))
    return dict(zip(pairs, results, strict=True))


def table(counts: dict[tuple[str, str], dict[str, int]]) -> str:
    """One row per rule, one column per (config, profile); '-' where a rule has no job."""
    columns = list(counts)
    rules: list[str] = []
    for rule_counts in counts.values():
        rules += [rule for rule in rule_counts if rule not in rules]
    headers = [f"{Path(c).stem}/{Path(p).name}" for c, p in columns]
    rows = [[rule, *(str(counts[col].get(rule, "-")) for col in columns)] for rule in rules]
    rows.append(["total", *(str(sum(counts[col].values())) for col in columns)])
    widths = [max(len(r[i]) for r in [["rule", *headers], *rows]) for i in range(len(headers) + 1)]

    def fmt(row):
        return "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        )

    lines = [fmt(["rule", *headers]), fmt(["-" * w for w in widths]), *map(fmt, rows)]
    return "\n".join(lines)


def main() -> int:
    try:
        counts = plans()
    except PlanError as err:
        print(f"dry run failed: {err}", file=sys.stderr)
        return 1
    print(table(counts))
    return 0


if __name__ == "__main__":
    sys.exit(main())
