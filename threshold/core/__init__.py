"""The ceremony and verification core.

Plain Python: WebAuthn ceremonies (Level 3 §7.1 and §7.2), their typed errors and
the error catalog. Nothing here imports Django's HTTP layer or the ORM; callers
pass in what was stored and persist what comes back.
"""
