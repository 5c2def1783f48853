"""load_theia / AutoModel against the reference code (github.com/bdaiinstitute/theia): the largest absolute
difference of forward_feature (every feature_reduce) and of every translator output (16x16, 7x7 and 64x64 heads)
on the fixture of tests/encoders/test_theia_upstream.py (a perturbed tiny RobotVisionFM, its .pth state dict).

    THEIA_UPSTREAM=/path/to/theia PYTHONPATH=.:<where einops is> python benchmarks/theia_parity.py [--images 3]

Needs a checkout of the reference repository (the folder holding src/theia) and einops; runs offline on the CPU.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "encoders"))  # the fixture helpers of the upstream tests


def upstream_commit(folder: Path) -> str:
    """The reference checkout's commit, or 'unknown' for a copy without git metadata."""
    result = subprocess.run(["git", "-C", str(folder), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=3)
    args = ap.parse_args()
    import test_theia_upstream as fixture
    from transformers import AutoModel

    from theia_eval import load_theia
    from theia_eval.encoders.theia_student import save_theia

    if not (fixture.UPSTREAM / "src" / "theia").is_dir():
        sys.exit("THEIA_UPSTREAM must point to a checkout of github.com/bdaiinstitute/theia (the folder holding src/).")
    sys.path.insert(0, str(fixture.UPSTREAM / "src"))
    from theia.models import rvfm, utils

    tmp = Path(tempfile.mkdtemp(prefix="theia-parity-"))
    ref = fixture.reference_model(rvfm, fixture.write_tiny_deit(tmp / "tiny-deit-patch16-224"))
    torch.save(ref.state_dict(), tmp / "rvfm.pth")
    ours = load_theia(tmp / "rvfm.pth", num_heads=2)
    auto = AutoModel.from_pretrained(str(save_theia(ours, tmp / "export")), trust_remote_code=True)
    images = torch.from_numpy(fixture.uint8_images(n=args.images, seed=1))
    print(f"reference commit {upstream_commit(fixture.UPSTREAM)}, {args.images} images of 224 px")
    print("| output | shape | load_theia vs reference | AutoModel(export) vs reference | reference max abs |")
    print("|---|---|---|---|---|")
    with torch.no_grad():
        hidden = ref.backbone(images)
        for upstream_name, name in ((None, None), ("mean_pooling", "mean"), ("max_pooling", "max"), ("cls", "cls")):
            want = utils.handle_feature_output(hidden, feature_reduce_method=upstream_name)
            got, got_auto = ours.forward_feature(images, name), auto.forward_feature(images, name)
            print(f"| forward_feature({name}) | {tuple(want.shape)} | {float((got - want).abs().max()):.1e} | "
                  f"{float((got_auto - want).abs().max()):.1e} | {float(want.abs().max()):.2f} |")
        want, got, got_auto = ref(images), ours(images), auto(images)
        for tid in fixture.TARGETS:
            print(f"| translator {tid} | {tuple(want[tid].shape)} | {float((got[tid] - want[tid]).abs().max()):.1e} | "
                  f"{float((got_auto[tid] - want[tid]).abs().max()):.1e} | {float(want[tid].abs().max()):.2f} |")


if __name__ == "__main__":
    main()
