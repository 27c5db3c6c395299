"""Where users import the net from (``from alexnet.model import AlexNet``); it lives in ``alexnet.models.alexnet``."""

from alexnet.models.alexnet import AlexNet, ArchitectureError, Ensemble, TowerLocalResponseNorm, log_mean_softmax

__all__ = ["AlexNet", "ArchitectureError", "Ensemble", "TowerLocalResponseNorm", "log_mean_softmax"]
