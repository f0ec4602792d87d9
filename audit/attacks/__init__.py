"""Attacks on a candidate: each takes a ``numpy.random.Generator`` and returns a frozen result.

Stable attack ids (policy files name attacks by these; an unknown id is an error):
- ``membership``: black-box membership inference against synthetic rows
  (``mia.dcr``, ``mia.dcr_calibrated``, ``mia.monte_carlo``, ``mia.domias``);
- ``whitebox``: membership inference on the released generator's weights
  (``mia.gan_leaks_wb``, ``mia.gan_leaks_wb_calibrated``);
- ``singling_out``, ``linkability``, ``inference``: Anonymeter's risks
  (``risk.singling_out.univariate``, ``risk.singling_out.multivariate``,
  ``risk.linkability``, ``risk.inference.<column>``).
"""

from hgan.audit.attacks import inference, linkability, membership, singling_out, whitebox

KNOWN_IDS: tuple[str, ...] = (membership.ATTACK_IDS + whitebox.ATTACK_IDS + singling_out.ATTACK_IDS
                              + (linkability.ATTACK_ID,))


def is_known(attack_id: str) -> bool:
    """Whether ``attack_id`` names an attack (inference ids name a modelled column)."""
    return attack_id in KNOWN_IDS or (attack_id.startswith(inference.ATTACK_ID_PREFIX)
                                      and len(attack_id) > len(inference.ATTACK_ID_PREFIX))
