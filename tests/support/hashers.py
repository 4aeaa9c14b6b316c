"""Argon2id at the lowest cost argon2-cffi accepts, for the integration tests' passwords.

The same algorithm, library, hash format (``argon2$argon2id$...``) and Django code path as
``threshold.accounts.hashers.Argon2idHasher``, whose cost (OWASP's m=19 MiB, t=2, p=1: about
30 ms a hash on a CI machine) made hashing a sizeable share of the suite's CPU: a thousand
hashes and checks per run of the integration tests, on each database. No test measures that
cost; production's is pinned by ``tests/integration/test_password_hashing.py``, which also checks a
password end to end at production's cost.
"""

from __future__ import annotations

from threshold.accounts.hashers import Argon2idHasher


class LowestCostArgon2idHasher(Argon2idHasher):
    time_cost = 1
    memory_cost = 8  # KiB: eight per lane, Argon2's least
    parallelism = 1
