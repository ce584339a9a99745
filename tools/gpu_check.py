"""The GPU path, measured in one run (`make gpu-check`, a few minutes on a GPU node) and
written to docs/gpu.md with the package versions and the device.

1. Throughput: training cells per second of ``preset: improved`` and of scvi-tools' SCVI
   on the demo's PBMCs and on 10^5 and 10^6 droplet cells (2000 genes; the 10^6 are the
   10^5 ten times over), on CUDA and on the CPU, at batch sizes 128 and 2048, over a few
   hundred steps after a warm-up (tools/gpu_measure.py); the CUDA graph's capture time
   apart. Then each lever alone on CUDA: steps without the graph, counts streamed from
   host memory instead of resident on the GPU.
2. One whole epoch of ``preset: improved`` on the 10^6 cells on CUDA, with its validation.
3. CUDA against the CPU on the demo, whole trainings with the same seed: how close the
   embeddings are (the share of each cell's 15 nearest neighbours both agree on, the ARI
   of their k-means clusters), and whether two CUDA runs give the same numbers.
4. Batch size: ``preset: improved`` at 128, 512 and 2048 on the 10^5 labelled droplet
   cells, 3 seeds, on CUDA: training cells per second and the k-means ARI against the
   labels, and whether a larger default keeps the ARI (within the seed sd).

docs/gpu.md is rewritten after each part, so a failure keeps what came before. Without a
CUDA device it says so, runs and writes nothing, and exits with status 1.

    .venv/bin/python tools/gpu_check.py [--seed 0] [--parts throughput,epoch,...]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from dataclasses import dataclass
from datetime import date
from importlib import metadata
from pathlib import Path

import pandas as pd
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

import gpu_measure as gm  # noqa: E402
from bench_scvi import load, schema_defaults  # noqa: E402
from gpu_trainings import STUDY_SEEDS, agreement, batch_study  # noqa: E402

GPU = "cuda"  # the device under test; the CPU is the other
BATCH_SIZES = (128, 2048)
PACKAGES = ("torch", "scvi-tools", "lightning", "numpy", "scipy", "anndata", "scikit-learn")
NO_CUDA = (
    "No CUDA device: torch {torch} sees none (torch.cuda.is_available() is False), so "
    "there is no GPU path to check here. Run it on a GPU node (e.g. srun --gpus=1 make "
    "gpu-check), with a CUDA build of torch."
)


def throughput(datasets, devices, seed: int, batch_sizes=BATCH_SIZES):
    """Rows of cells per second: each data, device, method and batch size (a batch
    larger than the training cells is left out), then the CUDA levers."""
    scvi_settings = schema_defaults("scvi")
    for data in datasets:
        measure = gm.Throughput(data)
        for device in devices:
            for batch_size in (b for b in batch_sizes if b <= data.n_train):
                cells = {"device": device, "data": data.name}
                yield {
                    **cells,
                    "method": "improved",
                    "batch_size": batch_size,
                    **measure.vae(device, batch_size, seed),
                }
                yield {
                    **cells,
                    "method": "scvi",
                    "batch_size": batch_size,
                    **gm.scvi_throughput(data, device, batch_size, seed, scvi_settings),
                }
                if device != GPU:
                    continue
                levers = [("no graph", {"graphs": False})]
                if data is datasets[-1]:
                    levers.append(("streamed", {"resident": False}))
                for lever, setting in levers:
                    row = measure.vae(device, batch_size, seed, **setting)
                    yield {**cells, "method": f"improved, {lever}", "batch_size": batch_size, **row}
        del measure  # frees the device's copy of the counts


def targets(rows: pd.DataFrame, big: str) -> list[str]:
    """The issue's targets on one GPU, each with its measured number."""
    cuda = rows[rows["device"] == GPU].drop_duplicates(["data", "method", "batch_size"])
    speed = {(r.data, r.method, r.batch_size): r.cells_per_s for r in cuda.itertuples()}
    lines = []
    if (big, "improved", 128) in speed:
        value = speed[(big, "improved", 128)]
        lines.append(_target(f"improved at batch_size 128, {big}", value, 300_000))
    ours = {b: v for (data, method, b), v in speed.items() if (data, method) == (big, "improved")}
    if ours:
        best = max(ours, key=ours.get)
        lines.append(_target(f"improved at the best batch size ({best}), {big}", ours[best], 1e6))
    for (data, method, batch_size), value in speed.items():
        if (method, batch_size) == ("improved", 128) and (data, "scvi", 128) in speed:
            ratio = value / speed[(data, "scvi", 128)]
            met = "met" if ratio >= 40 else "not met"
            lines.append(
                f"- {ratio:.1f}x SCVI's cells/s at batch_size 128, {data} (target 40x): {met}"
            )
    return lines


def _target(what: str, value: float, goal: float) -> str:
    met = "met" if value >= goal else "not met"
    return f"- {what}: {value:,.0f} cells/s (target {goal:,.0f}): {met}"


def header(seed: int) -> str:
    versions = ", ".join(f"{name} {_version(name)}" for name in PACKAGES)
    gpus = torch.cuda.device_count()
    return (
        "# The GPU path, measured\n\n"
        f"Written by `make gpu-check` (`tools/gpu_check.py`, seed {seed}) on {date.today()}: "
        f"{torch.cuda.get_device_name()} ({gpus} visible), CUDA {torch.version.cuda}, "
        f"{torch.get_num_threads()} CPU threads, Python {platform.python_version()}, "
        f"{versions}. Rewritten by each run; not edited by hand. What the numbers mean: "
        "[speed.md](speed.md#on-a-gpu).\n"
    )


def _version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def write(path: Path, top: str, parts: dict[str, str]) -> None:
    path.write_text(top + "".join(f"\n## {title}\n\n{text}\n" for title, text in parts.items()))


@dataclass
class Datasets:
    demo: gm.Data
    labelled: gm.Data  # 10^5 droplet cells with their types
    big: gm.Data  # the same ten times over


def datasets(cells: int, seed: int) -> Datasets:
    pre = load(None, min_genes=50)
    labels = pre.obs["bulk_labels"].to_numpy()
    demo = gm.Data("demo", pre.layers["counts"], pre.obs["split"].to_numpy(), labels)
    labelled = gm.droplet(cells, seed)
    return Datasets(demo, labelled, gm.tiled(labelled, 10, seed))


def part_throughput(data: Datasets, seed: int) -> tuple[str, str]:
    rows = []
    for row in throughput([data.demo, data.labelled, data.big], (GPU, "cpu"), seed):
        rows.append(row)
        print(", ".join(f"{key} {value}" for key, value in row.items()), flush=True)
    table = pd.DataFrame(rows).round({"cells_per_s": 0, "capture_s": 3, "setup_s": 2})
    plain = table["method"].isin(["improved", "scvi"])
    text = (
        "`cells_per_s`: training cells per second over `steps` steps after "
        f"{gm.WARMUP_STEPS} warm-up steps (at most {gm.STEPS} steps or {gm.STEP_SECONDS:.0f} "
        "s, `tools/gpu_measure.py`); `capture_s`: the capture of the CUDA graph, apart; "
        "`setup_s`: the counts' setup on the device (0 where the row before set them up). "
        "A batch larger than the demo's training cells is left out.\n\n"
        + table[plain].to_markdown(index=False)
        + "\n\nEach lever alone, on CUDA (the rows above have both):\n\n"
        + table[~plain].to_markdown(index=False)
        + "\n\nTargets (one GPU):\n\n"
        + "\n".join(targets(table, data.big.name))
    )
    return "Training throughput", text


def part_epoch(data: Datasets, seed: int) -> tuple[str, str]:
    big = data.big
    result, seconds, messages = gm.train_improved(big, GPU, seed, max_epochs=1, kl_warmup_epochs=0)
    epoch = float(result.history["seconds"].iloc[0])
    notes = [m for m in messages if m.startswith(("counts:", "training steps:"))]
    text = (
        f"- {big.name} cells ({big.n_train:,} training), preset improved, batch_size 128: one "
        f"epoch with its validation in {epoch:.2f} s, {big.n_train / epoch:,.0f} training "
        f"cells/s; {seconds:.1f} s with the setup and the embedding\n"
        + "".join(f"- {note}\n" for note in notes)
    )
    return f"One epoch of {big.name} cells on CUDA", text


def part_agreement(data: Datasets, seed: int) -> tuple[str, str]:
    table, lines = agreement(data.demo, seed, ("cpu", GPU))
    return "CUDA against the CPU (demo)", table.to_markdown(index=False) + "\n\n" + "\n".join(lines)


def part_batch_size(data: Datasets, seed: int) -> tuple[str, str]:
    table, lines = batch_study(data.labelled, seed, GPU)
    title = f"Batch size ({data.labelled.name} labelled cells, {STUDY_SEEDS} seeds, CUDA)"
    return title, table.to_markdown(index=False) + "\n\n" + "\n".join(lines)


PARTS = {
    "throughput": part_throughput,
    "epoch": part_epoch,
    "agreement": part_agreement,
    "batch_size": part_batch_size,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cells", type=int, default=100_000, help="droplet cells (x10: big)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"some of {', '.join(PARTS)}")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "gpu.md")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print(NO_CUDA.format(torch=torch.__version__))
        return 1
    start, top, parts = time.perf_counter(), header(args.seed), {}
    print(top, flush=True)
    data = datasets(args.cells, args.seed)
    print(f"data ready after {time.perf_counter() - start:.0f} s", flush=True)
    for name in args.parts.split(","):
        title, text = PARTS[name](data, args.seed)
        parts[title] = text
        print(f"\n## {title}\n\n{text}\n({time.perf_counter() - start:.0f} s)", flush=True)
        write(args.out, top, parts)
    parts["Time"] = f"The whole check took {time.perf_counter() - start:.0f} s."
    write(args.out, top, parts)
    print(f"{parts['Time']} Written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
