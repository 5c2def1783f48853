"""efficientnet-lite0 on the CPU: the checkpoint-layout network (conv, BatchNorm, ReLU6) vs the folded-BatchNorm
inference network the encoder runs (same map to ~3e-5).

    python benchmarks/efficientnet_fold.py [--threads 1] [--batch 32] [--repeats 3]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from theia_eval.encoders import create_encoder


def best_ms(fn, x: torch.Tensor, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return 1000 * min(times) / len(x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    enc = create_encoder("efficientnet-lite0")
    images = torch.from_numpy(np.random.default_rng(0).integers(0, 256, (args.batch, 224, 224, 3), dtype=np.uint8))
    x = enc.preprocess(images.permute(0, 3, 1, 2)).contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        enc.folded(x[:2]), enc.net.features(x[:2])
        plain = best_ms(enc.net.features, x, args.repeats)
        folded = best_ms(enc.folded, x, args.repeats)
        diff = (enc.folded(x) - enc.net.features(x)).abs().max().item()
    print(f"threads {args.threads}, batch {args.batch}: plain {plain:.1f} ms/img, folded {folded:.1f} ms/img "
          f"({plain / folded:.2f}x); max |difference| {diff:.1e}")


if __name__ == "__main__":
    main()
