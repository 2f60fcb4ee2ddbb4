"""The version of kerasxfer (a leaf module: run folders record it without importing the package)."""

__version__ = "0.1.0"
