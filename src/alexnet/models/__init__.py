"""The net and what holds it: ``alexnet.py`` (AlexNet and its variants, torch only), ``lit_alexnet.py`` (the
LightningModule: loss, metrics, optimizer and schedule), ``layer_summary.py`` (alexnet-summary's table),
``checkpoint_files.py`` (reading checkpoints and checking them against a net), ``pretrained.py`` (the builder the
model configs name: ``model.weights`` by torchvision name or file, the last layer initialised anew for another
number of classes) and ``feature_freezing.py`` (fine-tuning: frozen features, then a lower rate for them).

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
