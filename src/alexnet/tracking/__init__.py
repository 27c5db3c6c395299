"""What a run shows while it trains: images/s and MFU (``throughput.py``), and the pictures of a W&B dashboard
(``wandb_media.py``)."""

from alexnet.tracking.throughput import ThroughputLogger
from alexnet.tracking.wandb_media import WandbMedia

__all__ = ["ThroughputLogger", "WandbMedia"]
