"""What a method adapts: the discriminator inputs, built from the upsampled network outputs.

Each entry of ``cfg.method.adversarial`` names one discriminator and the map it sees:

* ``self_information``: AdvEnt's weighted self-information I(P) (eq. 5), C channels;
* ``depth``: the predicted inverse depth, 1 channel (Table 3's "depth adaptation");
* ``depth_aware``: DADA's I(P) ⊙ depth (eq. 6), the depth broadcast over the C channels;
* ``softmax``: the class probabilities P (AdaptSegNet's output-space adaptation), C channels.

The same function builds the generator's input (not detached: adversarial gradients reach the depth
branch, as the official code) and the discriminator's (detached by the caller).
"""

from __future__ import annotations

import torch

from dada import losses


def discriminator_input(kind: str, seg_logits: torch.Tensor, depth: torch.Tensor | None) -> torch.Tensor:
    """The map discriminator ``kind`` sees, from N×C×H×W logits and N×1×H×W inverse depth."""
    if kind == "depth":
        return depth
    probabilities = torch.softmax(seg_logits, dim=1)
    if kind == "softmax":
        return probabilities
    surprisal = losses.self_information(probabilities)
    if kind == "self_information":
        return surprisal
    if kind == "depth_aware":
        return losses.depth_aware_map(surprisal, depth)
    raise ValueError(f"unknown discriminator input {kind!r}")


def input_channels(kind: str, num_classes: int) -> int:
    return 1 if kind == "depth" else num_classes
