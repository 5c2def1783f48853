"""`theia-eval <verb> [key=value ...] [--flags]`: one entry point, verbs imported lazily.

Each verb is a function `run(argv: list[str]) -> int` in the module named below; it parses its own
--flags with argparse and composes its Hydra config from key=value overrides (theia_eval.config), whose
values are checked before any work (theia_eval.schema).

Errors: a TheiaEvalError, or an OSError (an unreadable input, an unwritable output path, a full disk),
ends the command with exit code 2 and one paragraph `theia-eval VERB: error: ...` on stderr; tracebacks
that worker processes (DataLoader, simulator workers) attach to their messages are cut down to the
original message. Other exceptions are bugs and keep their traceback.
"""
from __future__ import annotations

import errno
import importlib
import re
import sys

from theia_eval.errors import TheiaEvalError, unknown_name

# verb -> ("module:function", one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "encoders": ("theia_eval.encoders.commands:run", "list the encoder registry, or encode an image with one"),
    "embed": ("theia_eval.policies.commands:embed", "encode every demo frame once into the embedding cache"),
    "train": ("theia_eval.policies.commands:train", "behaviour-clone a policy head on a frozen encoder, evaluate in sim"),
    "evaluate": ("theia_eval.policies.commands:evaluate", "re-evaluate a trained run in simulation"),
    "quickstart": ("theia_eval.quickstart:run", "the small built-in end-to-end job (README's main command)"),
    "distill": ("theia_eval.distill.commands:distill", "distill a Theia student from a teacher set (cached/online, DDP)"),
    "frames": ("theia_eval.distill.commands:frames", "render a simulator frame set (RGB + depth + segmentation), "
               "or cut videos into frame shards"),
    "decode": ("theia_eval.decoding.commands:decode", "decode a student's teacher predictions (PCA, depth, masks ...)"),
    "tasks": ("theia_eval.envs.commands:tasks", "list the simulated suites and tasks"),
    "demos": ("theia_eval.envs.commands:demos", "collect expert demos (HDF5), summarize or import demo files"),
    "experts": ("theia_eval.envs.commands:experts", "train a fast DMC expert (state MLP) from its planner by DAgger, "
                "resumably"),
    "sweep": ("theia_eval.sweeps.commands:sweep", "run a grid of encoders x tasks x heads x seeds (+ students), resumably"),
    "leaderboard": ("theia_eval.analysis.commands:leaderboard", "leaderboard tables, plot and HTML from the results store"),
    "publish": ("theia_eval.sweeps.publish:run", "copy a sweep's finished cells and tables into a portable folder to commit"),
    "ablation": ("theia_eval.analysis.commands:ablation", "which teachers matter: the teacher-combination table of a sweep"),
    "entropy": ("theia_eval.analysis.commands:entropy", "feature-norm entropy per encoder and its correlation with success"),
}


def register_verb(name: str, target: str, help_text: str) -> None:
    """Add a verb (used by subpackages that bring their own commands)."""
    VERBS[name] = (target, help_text)


def _usage() -> str:
    width = max(len(v) for v in VERBS)
    lines = [f"  {v.ljust(width)}  {h}" for v, (_, h) in sorted(VERBS.items())]
    return ("usage: theia-eval <verb> [key=value ...] [--flags]\n\nverbs:\n" + "\n".join(lines)
            + "\n\n`theia-eval <verb> --help` shows a verb's options and its config keys.")


OS_HINTS = {errno.EACCES: "fix its permissions or choose another path", errno.EPERM: "fix its permissions or choose another path",
            errno.EROFS: "the file system is read-only: choose another path", errno.ENOSPC: "free some disk space or "
            "choose another disk", errno.ENOTDIR: "a part of the path is a file, not a folder: choose another path",
            errno.EISDIR: "it is a folder where a file is expected: choose another path",
            errno.EEXIST: "something is already there: choose another path or remove it",
            errno.ENOENT: "check the path", errno.EDQUOT: "the disk quota is exceeded"}


def worker_message(text: str) -> str:
    """The original message of an exception re-raised from a worker process (torch DataLoader), without the
    worker's traceback: 'Caught X in DataLoader worker process 0. Original Traceback ... pkg.X: message'."""
    head, _, tb = text.partition("\nOriginal Traceback")
    lines = tb.splitlines()
    last_frame = max((i for i, line in enumerate(lines) if line.startswith(" ")), default=-1)
    original = "\n".join(lines[last_frame + 1:]).strip()
    original = re.sub(r"^[\w.]+: ", "", original, count=1)
    where = re.sub(r"^Caught \w+ ", "", head).rstrip(".")
    return f"{original} (raised {where})"


def strip_tracebacks(text: str) -> str:
    """A message that carries other processes' tracebacks (e.g. simulator workers) without their frames:
    what failed and each final exception line remain."""
    chain = ("Traceback (most recent call last):", "During handling of the above exception",
             "The above exception was the direct cause")
    kept = [line for line in text.splitlines() if line.strip() and not line.startswith((" ", "\t"))
            and not line.startswith(chain)]
    return " ".join(re.sub(r"^theia_eval\.errors\.\w+: ", "", line) for line in kept)


def error_message(exc: BaseException) -> str:
    """One paragraph: the message of a TheiaEvalError, or an OS error with its path and what to do."""
    text = str(exc)
    if "\nOriginal Traceback" in text:
        text = worker_message(text)
    elif "Traceback (most recent call last):" in text:
        text = strip_tracebacks(text)
    elif isinstance(exc, OSError) and not isinstance(exc, TheiaEvalError):
        names = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None)
        reason = exc.strerror or text
        hint = OS_HINTS.get(exc.errno or -1, "check the path, its permissions and the free disk space")
        text = f"{reason}: {names}; {hint}." if names else f"{reason} ({type(exc).__name__}); {hint}."
    return " ".join(text.split())


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0
    verb, rest = argv[0], argv[1:]
    if verb in ("--version", "version"):
        from theia_eval import __version__

        print(__version__)
        return 0
    try:
        if verb not in VERBS:
            raise unknown_name("verb", verb, VERBS)
        module, func = VERBS[verb][0].split(":")
        return int(getattr(importlib.import_module(module), func)(rest) or 0)
    except (TheiaEvalError, OSError) as exc:  # OSError: an unreadable input or unwritable output path
        print(f"theia-eval {verb}: error: {error_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
