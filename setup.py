"""The packages of the wheel, found rather than listed (the rest of the metadata is in setup.cfg).

Every package under kerasxfer/ is found, so a new folder is never left out of the wheel (one that was
installed a kerasxfer whose study and compare could not import); experiments/ (the absl entry points that
make and `python -m experiments.X` run from the repository) installs as kerasxfer.experiments: one
command, `kerasxfer`, and no generic top-level package. tests/test_wheel.py builds the wheel and runs it.
"""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["kerasxfer", "kerasxfer.*"]) + ["kerasxfer.experiments"],
    package_dir={"kerasxfer.experiments": "experiments"},
)
