"""The 2012 paper's optimizer and learning-rate schedule (``conf/optimizer/``, ``conf/scheduler/``)."""

from alexnet.optim.paper_plateau import PaperPlateau
from alexnet.optim.paper_sgd import PaperSGD

__all__ = ["PaperPlateau", "PaperSGD"]
