"""H-GAN appliance: differentially private generators of clinical tables.

Subpackages: ``hgan.appliance`` (hospital side: data, training, ledger),
``hgan.audit`` (attacks and measurements), ``hgan.release`` (what a researcher
needs: schema, codec, generator, sampling; never imports the hospital side),
``hgan.policies`` (policy files).
"""

__version__ = "0.1.0"
