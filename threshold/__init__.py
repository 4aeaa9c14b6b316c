"""Threshold: a self-hosted passwordless identity provider."""

__version__ = "0.1.0"
