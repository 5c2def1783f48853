"""`theia-eval decode`: a student's predicted teacher features back to teacher outputs (PNG panels, mp4)."""
from __future__ import annotations

import argparse
from pathlib import Path

from omegaconf import OmegaConf

from theia_eval.config import to_yaml
from theia_eval.errors import InputError
from theia_eval.io import atomic_write_json
from theia_eval.verbs import verb_config, verb_parser


def _parser() -> argparse.ArgumentParser:
    p = verb_parser("decode", "Decode a Theia student's teacher predictions: PCA colours, depth, label maps, SAM "
                    "masks, ImageNet top-5, one PNG row per input (mp4 for videos).",
                    "Per-teacher decoder weights: +decoder_weights.NAME=PATH.")
    p.add_argument("--print-config", action="store_true", help="print the composed config and exit")
    return p


def decode(argv: list[str]) -> int:
    """Decode every input of media= into out=; prints what was written (and fidelity for frame sets)."""
    from theia_eval.decoding.decode import DecodeRun, Decoding, decode_media, media_items
    from theia_eval.decoding.decoders import DecodeSettings
    from theia_eval.decoding.fidelity import fidelity_lines
    from theia_eval.encoders.theia_student import load_theia

    args, cfg = verb_config(_parser(), argv, "decode")
    if args.print_config:
        print(to_yaml(cfg))
        return 0
    if not cfg.media:
        raise InputError("media= is required: an image, a video, a folder of them, or frames:PATH.")
    c = OmegaConf.to_container(cfg, resolve=True)
    media_items(str(c["media"]))  # a missing or empty media= fails before any model loads
    model = load_theia(c["model"], stats=c["stats"], device=c["device"])
    settings = DecodeSettings(size=model.config.image_size, top_k=int(c["top_k"]), device=c["device"],
                              decoder_weights=dict(c["decoder_weights"] or {}), sam=dict(c["sam"] or {}))
    decoding = Decoding(model, settings, c["teachers"], c["on_missing_weights"])
    name = str(c["media"]).rstrip("/").split(":")[-1]
    out = Path(c["out"] or Path("decoded") / (Path(name).stem or "media")).expanduser()
    run = DecodeRun(out=out, batch_size=int(c["batch_size"]), every=int(c["every"]), max_frames=c["max_frames"],
                    fps=c["fps"], max_images=int(c["max_images"]), score_images=c["score_images"])
    records = decode_media(decoding, str(c["media"]), run)
    atomic_write_json(out / "decode.json", {"model": c["model"], "records": records})
    for r in records:
        written = [r[k] for k in ("png", "mp4") if k in r]
        print(f"{r['media']}: {written if len(str(written)) < 300 else str(len(r['png'])) + ' PNG rows'}")
        for line in fidelity_lines(r.get("fidelity", {})):
            print(line)
    print(f"wrote {out}")
    return 0
