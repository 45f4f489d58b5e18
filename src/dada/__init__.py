"""dada-seg: depth-aware unsupervised domain adaptation for semantic segmentation (DADA, ICCV 2019)."""

from dada.errors import DadaError

__version__ = "0.1.0"
__all__ = ["DadaError", "__version__"]
