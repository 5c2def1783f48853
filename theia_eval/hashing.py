"""Content hashes that name results: canonical-JSON hashes of settings, and fingerprints of weight files."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def stable_hash(obj: Any, length: int = 16) -> str:
    """sha256 of the canonical JSON of obj, truncated."""
    text = json.dumps(obj, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def weights_hash(weights_id: str) -> str:
    """Hash of the weights: the files behind a local path (names, sizes, first/last MiB), else the id itself."""
    h = hashlib.sha256()
    path = Path(weights_id) if weights_id else None
    if path is not None and path.exists():
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for f in files:
            size = f.stat().st_size
            h.update(f"{f.relative_to(path.parent)}:{size}".encode())
            with open(f, "rb") as fh:
                h.update(fh.read(1 << 20))
                if size > 2 << 20:
                    fh.seek(-(1 << 20), 2)
                    h.update(fh.read())
    else:
        h.update(str(weights_id).encode())
    return h.hexdigest()[:16]
