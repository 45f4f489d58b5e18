"""The training engine: one loop for every method (``Trainer``), checkpoints, logging, resumable data."""

from dada.engine.trainer import Trainer

__all__ = ["Trainer"]
