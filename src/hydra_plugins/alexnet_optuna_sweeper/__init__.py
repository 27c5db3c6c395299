"""alexnet's Hydra sweeper on Optuna's ask-and-tell API (``hydra/sweeper=alexnet_optuna``). Hydra loads sweepers only
from the ``hydra_plugins`` namespace package; the logic is ``alexnet.search``'s."""
