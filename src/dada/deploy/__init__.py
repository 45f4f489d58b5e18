"""Deployment, apart from evaluation: ``dada predict`` on images, folders and videos (:mod:`.predict`) and
ONNX export with its parity check and onnxruntime inference (:mod:`.export`). It uses the evaluation
layer (the network's outputs, figures, what input a model expects); evaluation never imports it.

See ``docs/deploy.md``.
"""

from dada.deploy.export import export_onnx
from dada.deploy.predict import predict_checkpoint, predict_images

__all__ = ["export_onnx", "predict_checkpoint", "predict_images"]
