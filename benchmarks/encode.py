"""Contract overhead: images/s of `encoder(uint8 images)` vs the bare model forward on the same batch.

The bare forward gets the batch already resized and normalized (done once, outside the timer), so the
difference is everything the contract adds: validation, tensor preprocessing, chunking, autocast.
A third column times the reference-style path: a Hugging Face image processor (PIL, per image) + forward.

    python benchmarks/encode.py                                # CPU: efficientnet-lite0, random-vit-tiny, theia-tiny
    python benchmarks/encode.py --device cuda --batch 256 --encoders theia-tiny theia-small theia-base
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from theia_eval.encoders import create_encoder

RANDOM_OK = {"theia-tiny", "theia-small", "theia-base", "random-vit-nano", "random-vit-tiny"}


def timed(fn, repeats: int, sync) -> float:
    """Median seconds of fn() over repeats runs after one warm-up."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def hf_processor_path(enc, images: np.ndarray):
    """Reference-style wrapper: a transformers image processor (PIL per image) then the model."""
    from PIL import Image
    from transformers import ViTImageProcessor

    pre = enc.config.preprocess
    proc = ViTImageProcessor(size={"height": enc.input_size, "width": enc.input_size}, image_mean=list(pre.mean),
                             image_std=list(pre.std))
    pil = [Image.fromarray(im) for im in images]

    def run():
        x = proc(images=pil, return_tensors="pt")["pixel_values"].to(enc.device)
        with torch.inference_mode():
            enc.forward_features(x)

    return run


def bench(name: str, batch: int, size: int, repeats: int, device: str, dtype: str, weights: str | None = "auto",
          hf: bool = True) -> dict:
    """bare / contract (/ HF-processor when hf) img/s of one encoder; weights "auto": random for RANDOM_OK, else default."""
    weights = ("random" if name in RANDOM_OK else None) if weights == "auto" else weights
    enc = create_encoder(name, weights=weights, device=device, dtype=dtype, max_batch=batch)
    images = np.random.default_rng(0).integers(0, 256, (batch, size, size, 3), dtype=np.uint8)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    x = enc.preprocess(torch.from_numpy(images).permute(0, 3, 1, 2).to(device))
    autocast = enc.dtype != torch.float32

    def bare():
        with torch.inference_mode(), torch.autocast(enc.device.type, dtype=enc.dtype, enabled=autocast):
            enc.forward_features(x)

    t_bare = timed(bare, repeats, sync)
    t_contract = timed(lambda: enc(images), repeats, sync)
    t_hf = timed(hf_processor_path(enc, images), repeats, sync) if hf else None
    return {"encoder": name, "batch": batch, "image": size, "device": device, "dtype": dtype,
            "bare_img_s": batch / t_bare, "contract_img_s": batch / t_contract,
            "hf_processor_img_s": batch / t_hf if hf else None, "overhead_pct": 100 * (t_contract / t_bare - 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoders", nargs="+", default=["efficientnet-lite0", "random-vit-tiny", "theia-tiny"])
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=224, help="side of the uint8 input images")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dtype", default="float32")
    p.add_argument("--out", default=None, help="JSON file for the figures")
    args = p.parse_args()
    rows = [bench(n, args.batch, args.size, args.repeats, args.device, args.dtype) for n in args.encoders]
    print(f"| encoder | batch | bare img/s | contract img/s | overhead | HF-processor path img/s |  ({platform.node()}, "
          f"{torch.get_num_threads()} threads, {args.device}, {args.dtype})")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['encoder']} | {r['batch']} | {r['bare_img_s']:.1f} | {r['contract_img_s']:.1f} | "
              f"{r['overhead_pct']:+.1f}% | {r['hf_processor_img_s']:.1f} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
