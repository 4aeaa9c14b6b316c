"""Threshold Verify, the device app: approves Threshold sign-ins from this computer.

It speaks Threshold's device API (docs/device-api.md in Threshold's repository) and nothing
else: it never imports the server's code.
"""

__version__ = "0.1.0"
