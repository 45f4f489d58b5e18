"""Training methods as plug-ins: one file per family, a plain dict from ``method.name`` to the class.

Adding a method is a new file here (its class with a ``Settings`` dataclass of its keys) plus one entry
in :data:`METHODS` and one preset entry in ``configs/methods.yaml`` (see ``docs/developing.md``).
"""

from __future__ import annotations

from dada.errors import DadaError
from dada.methods.adaptpatch import AdaptPatch
from dada.methods.adversarial import DISCRIMINATOR_INPUTS, Adversarial, OutputAdversary, discriminator_input
from dada.methods.base import Method, MethodSettings, SourceSettings, forward_upsampled, poly_lr
from dada.methods.clan import CLAN
from dada.methods.dacs import DACS
from dada.methods.dada import DADA
from dada.methods.dast import DepthAwareSelfTraining
from dada.methods.minent import MinEnt
from dada.methods.source_only import Oracle, SourceOnly
from dada.methods.spigan import SPIGAN

#: ``cfg.method.name`` → the class that trains it (its ``Settings`` are the keys under ``method.*``)
METHODS: dict[str, type[Method]] = {
    "source_only": SourceOnly,  # S1
    "minent": MinEnt,
    "advent": Adversarial,  # S2
    "adaptsegnet": Adversarial,
    "s3": Adversarial,
    "s4": Adversarial,
    "s5": Adversarial,
    "s6": Adversarial,
    "dada": DADA,  # S7
    "clan": CLAN,  # the paper's comparison systems (Table 1), docs/methods.md
    "adaptpatch": AdaptPatch,
    "spigan": SPIGAN,  # SPIGAN and SPIGAN-no-PI (method.privileged)
    "oracle": Oracle,  # trained on the target's labels (the oracle preset)
    "dacs": DACS,  # self-training (docs/self-training.md)
    "dast": DepthAwareSelfTraining,
}


def method_class(name: str) -> type[Method]:
    """The class of ``method.name``; DadaError listing the known names otherwise."""
    if name not in METHODS:
        raise DadaError(f"method.name: unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


__all__ = ["CLAN", "DACS", "DADA", "DISCRIMINATOR_INPUTS", "METHODS", "SPIGAN", "AdaptPatch", "Adversarial",
           "DepthAwareSelfTraining", "Method", "MethodSettings", "MinEnt", "Oracle", "OutputAdversary",
           "SourceOnly", "SourceSettings", "discriminator_input", "forward_upsampled", "method_class",
           "poly_lr"]
