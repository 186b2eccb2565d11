"""Footprint: self-hosted web-analytics event pipeline."""

__version__ = "0.1.0"
