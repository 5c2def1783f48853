"""Behaviour-cloning throughput: training samples/s per head on cached float16 embeddings (memory-mapped).

    python benchmarks/bc.py                       # CPU, efficientnet-lite0 (7x7x1280) and theia-tiny (14x14x192) shapes
    python benchmarks/bc.py --frames 4000 --epochs 2
    python benchmarks/bc.py --heads conv --precision fp32 bf16   # bf16 autocast (AMX CPUs, GPUs)

"load" is the share of the time spent assembling batches (memmap read, fp16 -> fp32, FLARE fusion).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from theia_eval.policies.bc import BCConfig, WindowDataset, train_bc
from theia_eval.policies.heads import head_input_kind

SHAPES = {"efficientnet-lite0": {"tokens": (7, 7, 1280), "summary": (1280,)},
          "theia-tiny": {"tokens": (14, 14, 192), "summary": (192,)}}


def memmap_embeddings(folder: Path, frames: int, shape: tuple[int, ...]) -> np.ndarray:
    """A float16 .npy on disk opened memory-mapped, like the embedding cache."""
    path = folder / f"emb_{'x'.join(map(str, shape))}.npy"
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=(frames, *shape))
    rng = np.random.default_rng(0)
    for i in range(0, frames, 256):
        arr[i:i + 256] = rng.standard_normal((min(256, frames - i), *shape)).astype(np.float16)
    arr.flush()
    return np.load(path, mmap_mode="r")


def bench_head(head: str, emb: np.ndarray, frames: int, epochs: int, batch: int,
               precision: str = "fp32", device: str = "cpu") -> tuple[float, float]:
    """(samples/s of train_bc, share of batch assembly) with FLARE windows, proprio 4, action 4."""
    lengths = [100] * (frames // 100)
    rng = np.random.default_rng(1)
    data = WindowDataset(emb, rng.standard_normal((frames, 4)), rng.standard_normal((frames, 4)), lengths,
                         head_input_kind(head), history=3, fusion="flare")
    cfg = BCConfig(head=head, epochs=epochs, batch_size=batch, progress=False, precision=precision, device=device)
    loading = [0.0]
    get_batch = data.get_batch

    def timed_get_batch(index):
        t = time.perf_counter()
        out = get_batch(index)
        loading[0] += time.perf_counter() - t
        return out

    data.get_batch = timed_get_batch
    t0 = time.perf_counter()
    train_bc(data, cfg)
    wall = time.perf_counter() - t0
    return len(data) * epochs / wall, loading[0] / wall


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--frames", type=int, default=2500, help="cached frames (25 demos x 100 steps)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--heads", nargs="+", default=["mlp", "conv", "attn"])
    p.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    args = p.parse_args()
    print(f"| encoder shape | head | precision | samples/s | load |  (CPU, {torch.get_num_threads()} threads, "
          f"batch {args.batch})")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for enc, shapes in SHAPES.items():
            for head in args.heads:
                shape = shapes[head_input_kind(head)]
                emb = memmap_embeddings(Path(tmp), args.frames, shape)
                for precision in args.precision:
                    sps, load = bench_head(head, emb, args.frames, args.epochs, args.batch, precision)
                    print(f"| {enc} {'x'.join(map(str, shape))} | {head} | {precision} | {sps:,.0f} | "
                          f"{100 * load:.0f}% |", flush=True)


if __name__ == "__main__":
    main()
