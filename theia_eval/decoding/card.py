"""Write decoding results into a student's CARD.md: `python -m theia_eval.decoding.card CARD FIDELITY_JSON ...`.

Replaces (or appends) the card's "## Decoding" section with the fidelity of decoded sim-depth / sim-segmentation
predictions against the simulator's exact channels, the frames they were measured on and the command that made
them (scripts/theia_offline_decode.sh runs the whole thing for the bundled student).
"""
from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from theia_eval.decoding.fidelity import fidelity_lines
from theia_eval.io import atomic_write_text

SECTION = "## Decoding"


def section(summary: dict, frames: str, command: str, figure: str | None) -> str:
    """The card section: what was measured, on which frames, with which command."""
    lines = [SECTION, "",
             f"Decoded predictions vs the simulator's exact depth and segmentation on {summary['images']} frames the "
             f"student never trained on ({frames}):", "", *fidelity_lines(summary), "",
             "Depth: the decoded 64x64 map vs the exact depth pooled as the sim-depth teacher pools it (metres, "
             "clipped at 5 m); abs-rel = mean |d - d*| / d*. Segmentation: the decoded label map (bilinear "
             "upsampling of the predicted class frequencies, argmax) vs the exact labels at 224 px; IoU per class "
             "over all frames.", "", *([f"Figure (one decoded frame): `{figure}`.", ""] if figure else []),
             "Made with:", "", "```", command, "```", ""]
    return "\n".join(lines)


def replace_section(text: str, body: str) -> str:
    """`text` with its '## Decoding' section (up to the next '## ' heading) replaced by `body`, or `body` appended."""
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        return pattern.sub(lambda _: body + "\n", text, count=1).rstrip("\n") + "\n"
    return text.rstrip("\n") + "\n\n" + body


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m theia_eval.decoding.card", description=__doc__.splitlines()[0])
    p.add_argument("card", type=Path)
    p.add_argument("fidelity", type=Path, help="fidelity.json written by `theia-eval decode media=frames:...`")
    p.add_argument("--frames", required=True, help="what the frames are (words for the card)")
    p.add_argument("--command", required=True, help="the command that made the numbers")
    p.add_argument("--figure", default=None, help="repository path of the decode figure")
    args = p.parse_args(argv)
    summary = json.loads(args.fidelity.read_text())
    atomic_write_text(args.card, replace_section(args.card.read_text(), section(summary, args.frames, args.command,
                                                                              args.figure)))
    print(f"updated the {SECTION!r} section of {args.card}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
