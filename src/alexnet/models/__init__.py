"""The net and what holds it: ``alexnet.py`` (AlexNet and its variants, torch only), ``lit_alexnet.py`` (the
LightningModule: loss, metrics, optimizer and schedule), ``layer_summary.py`` (alexnet-summary's table) and
``checkpoint_files.py`` (reading checkpoints and checking them against a net).

Only the torch-only names are re-exported here, so ``from alexnet.models import AlexNet`` imports nothing else."""

from alexnet.models.alexnet import (
    AlexNet,
    ArchitectureError,
    Ensemble,
    TowerLocalResponseNorm,
    log_mean_softmax,
    net_weights,
)

__all__ = ["AlexNet", "ArchitectureError", "Ensemble", "TowerLocalResponseNorm", "log_mean_softmax", "net_weights"]
