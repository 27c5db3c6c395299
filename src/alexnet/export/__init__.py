"""Exporting a trained net for use outside this project: ONNX and ``torch.export`` files, each with the description
of its input (``input_spec``), checked against the checkpoint it came from (``validation``)."""

from alexnet.export.exporting import export_checkpoint

__all__ = ["export_checkpoint"]
