"""Training methods as plug-ins: one file per family, a plain dict from ``method.name`` to the class.

Adding a method is a new file here plus one entry in :data:`METHODS` and one preset entry in
``configs/methods.yaml`` (see ``docs/developing.md``).
"""

from __future__ import annotations

from dada.methods.adaptpatch import AdaptPatch
from dada.methods.adversarial import DISCRIMINATOR_INPUTS, Adversarial, discriminator_input
from dada.methods.base import Method, forward_upsampled, poly_lr
from dada.methods.clan import CLAN
from dada.methods.minent import MinEnt
from dada.methods.source_only import SourceOnly
from dada.methods.spigan import SPIGAN

#: ``cfg.method.name`` → the class that trains it
METHODS: dict[str, type[Method]] = {
    "source_only": SourceOnly,  # S1
    "minent": MinEnt,
    "advent": Adversarial,  # S2
    "adaptsegnet": Adversarial,
    "s3": Adversarial,
    "s4": Adversarial,
    "s5": Adversarial,
    "s6": Adversarial,
    "dada": Adversarial,  # S7
    "clan": CLAN,  # the paper's comparison systems (Table 1), docs/methods.md
    "adaptpatch": AdaptPatch,
    "spigan": SPIGAN,  # SPIGAN and SPIGAN-no-PI (method.privileged)
    "oracle": SourceOnly,  # trained on the target's labels (the oracle preset)
}

__all__ = ["CLAN", "DISCRIMINATOR_INPUTS", "METHODS", "SPIGAN", "AdaptPatch", "Adversarial", "Method",
           "MinEnt", "SourceOnly", "discriminator_input", "forward_upsampled", "poly_lr"]
