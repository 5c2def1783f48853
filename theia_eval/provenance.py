"""Where a result came from: the machine that made it, and machine paths made portable for committed results."""
from __future__ import annotations

import os
import platform
import re
import site
import sys
from pathlib import Path


def machine(threads: int | None = None) -> dict:
    """What ran it: CPU, cores, memory, OS, Python and torch (with its thread count)."""
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = (os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")) / 2**30 if hasattr(os, "sysconf") else None
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1) if mem else None,
            "os": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "torch_threads": int(threads) if threads else torch.get_num_threads()}


def machine_line(m: dict) -> str:
    return (f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}, Python {m['python']}, "
            f"torch {m['torch']} ({m['torch_threads']} threads)")


def code_version() -> str:
    """The package version, plus the git commit when the package runs from a checkout (read from .git)."""
    from theia_eval.version import __version__

    git = Path(__file__).resolve().parents[1] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = head[5:]
            ref_file = git / ref
            if ref_file.is_file():
                head = ref_file.read_text().strip()
            else:
                packed = (git / "packed-refs").read_text().splitlines()
                head = next(line.split()[0] for line in packed if line.endswith(" " + ref))
        return f"{__version__}+g{head[:12]}"
    except (OSError, StopIteration):
        return __version__


def machine_prefixes(root: str | Path | None = None) -> list[tuple[str, str]]:
    """(absolute prefix, portable replacement) pairs, most specific first: installed packages become
    'site-packages/', the repository (or `root`) becomes relative, the home folder '~'."""
    pkgs = {p for p in [*site.getsitepackages(), site.getusersitepackages()] if p}
    pairs = [(str(Path(p)) + "/", "site-packages/") for p in pkgs]
    pairs.append((str(Path(sys.prefix)) + "/", "<python-prefix>/"))
    pairs.append((str(Path(root or os.getcwd()).resolve()) + "/", ""))
    pairs.append((str(Path.home()) + "/", "~/"))
    return sorted(set(pairs), key=lambda p: -len(p[0]))


def portable(text: str, root: str | Path | None = None) -> str:
    """`text` with this machine's absolute prefixes replaced (see machine_prefixes)."""
    for prefix, repl in machine_prefixes(root):
        text = text.replace(prefix, repl)
    return text


ABSOLUTE = re.compile(r"(?<![\w.~<>-])/(?:home|root|tmp|work|Users|mnt|scratch|data|opt|usr|var)/[^\s\"',)\]]+")


def absolute_paths(text: str) -> list[str]:
    """Absolute machine paths left in a text (what `portable` could not map)."""
    return ABSOLUTE.findall(text)
