"""Attacks on a candidate: each takes a ``numpy.random.Generator`` and returns a frozen result.

``membership``: black-box membership inference against synthetic rows
(``mia.dcr``, ``mia.dcr_calibrated``, ``mia.monte_carlo``, ``mia.domias``).
"""

from hgan.audit.attacks.membership import ATTACK_IDS, AttackResult, run_membership_attacks

__all__ = ["ATTACK_IDS", "AttackResult", "run_membership_attacks"]
