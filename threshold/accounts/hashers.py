"""Argon2id for the fallback passwords, at OWASP's recommended cost.

Django's defaults (100 MiB, 8 lanes) cost a small server about 170 ms and
100 MiB per check, which a burst of wrong passwords turns into memory
pressure. OWASP's Password Storage Cheat Sheet lists m=19 MiB, t=2, p=1 as
an equivalent choice; RFC 9106 §4 allows trading memory for passes.
"""

from __future__ import annotations

from django.contrib.auth.hashers import Argon2PasswordHasher


class Argon2idHasher(Argon2PasswordHasher):
    # Same algorithm name: hashes stay "argon2$argon2id$...", and Django
    # re-hashes with these costs at the next successful check.
    time_cost = 2
    memory_cost = 19 * 1024  # KiB
    parallelism = 1
