"""A shim for tools that still call setup.py; everything, the packages included, is in setup.cfg."""

from setuptools import setup

setup()
