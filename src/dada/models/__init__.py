"""The networks: backbones, the segmenter with the DADA depth block, the patch discriminator, weights.

See ``docs/models.md`` and, to add a backbone, ``docs/developing.md``.
"""

from dada.checkpoints import CHECKPOINT_FORMAT, find_checkpoint
from dada.models.backbones import BACKBONES, BN_MODES, Backbone, build_backbone
from dada.models.discriminator import Discriminator, build_discriminator, discriminator_output_size
from dada.models.heads import DEPTH_WIDTHS, depth_block_widths
from dada.models.loading import load_pretrained, load_segmenter
from dada.models.segmenter import Segmenter, SegmenterOutput, build_segmenter, upsample

__all__ = [
    "BACKBONES",
    "BN_MODES",
    "CHECKPOINT_FORMAT",
    "DEPTH_WIDTHS",
    "Backbone",
    "Discriminator",
    "Segmenter",
    "SegmenterOutput",
    "build_backbone",
    "build_discriminator",
    "build_segmenter",
    "depth_block_widths",
    "discriminator_output_size",
    "find_checkpoint",
    "load_pretrained",
    "load_segmenter",
    "upsample",
]
