"""The networks: DeepLab-v2 segmenter with the DADA depth block, the patch discriminator, weight loading.

See ``docs/models.md``.
"""

from dada.models.discriminator import Discriminator, build_discriminator, discriminator_output_size
from dada.models.loading import CHECKPOINT_FORMAT, find_checkpoint, load_pretrained, load_segmenter
from dada.models.resnet import ARCHS, BN_MODES, ArchSpec, output_size
from dada.models.segmenter import (
    DEPTH_WIDTHS,
    Segmenter,
    SegmenterOutput,
    build_segmenter,
    depth_block_widths,
    upsample,
)

__all__ = [
    "ARCHS",
    "BN_MODES",
    "CHECKPOINT_FORMAT",
    "DEPTH_WIDTHS",
    "ArchSpec",
    "Discriminator",
    "Segmenter",
    "SegmenterOutput",
    "build_discriminator",
    "build_segmenter",
    "depth_block_widths",
    "discriminator_output_size",
    "find_checkpoint",
    "load_pretrained",
    "load_segmenter",
    "output_size",
    "upsample",
]
