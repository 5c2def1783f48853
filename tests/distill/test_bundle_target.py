"""bundle.py's held-out target section (from a run's own numbers) and reproducible safetensors headers."""
import json
import struct

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from theia_eval.distill.bundle import parse_target, target_rows
from theia_eval.errors import InputError
from theia_eval.io import save_safetensors

CURVE = {"points": [{"step": s, "cos": {"eff": c, "depth": 0.9}} for s, c in
                    [(1000, 0.40), (2000, 0.50), (3000, 0.52), (4000, 0.53)]]}
SUMMARY = {"student": "nano", "params_m": 1.3, "train": {"teachers": {"eff": {"cos": 0.70}}}}
FITS = [{"cos_by_family": {"metaworld": {"eff": 0.66, "images": 4}, "dmc": {"eff": 0.38, "images": 4}}}]


def test_unmet_target_reports_plateau_fit_and_domains_from_the_numbers():
    text = "\n".join(target_rows(("eff", 0.8), CURVE, SUMMARY, FITS))
    assert "Final step 4000: 0.530 (best 0.530 at step 4000): **not met**" in text
    # half-way point is step 2000: +0.030 over 2000 steps = +0.015 per 1000; (0.8 - 0.53) / 0.015 = 18 thousand
    assert "+0.030 from step 2000 (0.500)" in text and "+0.0150 per 1000 steps" in text and "18,000 steps" in text
    assert "cosine 0.700 (last logged batch), itself below the target" in text
    assert "dmc 0.380, metaworld 0.660" in text and "metaworld frames" in text and "dmc (whole domains" in text


def test_met_target_says_so_and_nothing_else():
    text = "\n".join(target_rows(("depth", 0.85), CURVE, SUMMARY, FITS))
    assert "**met**" in text and "What stopped it" not in text


def test_target_errors_name_the_problem():
    assert parse_target("efficientnet-lite0=0.80") == ("efficientnet-lite0", 0.8)
    for bad in ("0.8", "eff=", "eff=high", "eff=1.5", "=0.8"):
        with pytest.raises(InputError, match="TEACHER=COSINE"):
            parse_target(bad)
    with pytest.raises(InputError, match="'dino'.*eff, depth"):
        target_rows(("dino", 0.8), CURVE, SUMMARY, FITS)


def test_safetensors_header_does_not_depend_on_metadata_order(tmp_path):
    tensors = {"b": torch.arange(6, dtype=torch.float16).reshape(2, 3), "a": torch.ones(4)}
    meta = {"stored_dtype": "float16", "format": "pt", "note": "x" * 7}
    files = []
    for i, order in enumerate((meta, dict(reversed(list(meta.items()))))):
        files.append(tmp_path / f"{i}.safetensors")
        save_safetensors(tensors, files[-1], metadata=order)
    assert files[0].read_bytes() == files[1].read_bytes()
    raw = files[0].read_bytes()
    header = json.loads(raw[8:8 + struct.unpack("<Q", raw[:8])[0]])
    assert list(header["__metadata__"]) == sorted(meta)  # the order in the file; readers return a hash map
    with safe_open(str(files[0]), "pt") as f:
        assert f.metadata() == meta
    loaded = load_file(files[0])
    assert all(torch.equal(loaded[k], v) for k, v in tensors.items())
