"""Package discovery: theia_eval.* plus the top-level configs/ folder installed as theia_eval.configs."""
from setuptools import find_packages, setup

setup(packages=find_packages(include=["theia_eval", "theia_eval.*"]) + ["theia_eval.configs"])
