"""Moved to `theia_eval.envs.adroit.importer`; this name re-exports it, and
`python -m theia_eval.envs.adroit_import` still runs the importer."""
from theia_eval.envs.adroit.importer import *  # noqa: F401,F403
from theia_eval.envs.adroit.importer import main

if __name__ == "__main__":
    raise SystemExit(main())
