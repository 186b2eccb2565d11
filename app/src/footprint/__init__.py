"""Footprint: self-hosted web-analytics event pipeline."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("footprint")  # one definition: pyproject.toml
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
