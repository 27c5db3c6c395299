"""Configuration: where ``conf/`` lives, the resolvers it uses, what Hydra knows of one invocation, the rules every
setting's value must follow, and saved configs brought up to date."""

from alexnet.config import resolvers  # noqa: F401  (registers the alexnet.* resolvers)
from alexnet.config.invocation import Invocation
from alexnet.config.location import CONFIG_DIR
from alexnet.config.rules import AGREE, RULES, check_settings

__all__ = ["AGREE", "CONFIG_DIR", "RULES", "Invocation", "check_settings"]
