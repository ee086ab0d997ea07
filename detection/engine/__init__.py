"""Training / inference entry points (detectron2's ``detectron2.engine`` counterpart)."""
from ..config_checks import check_config
from ..utils import comm
from .defaults import (
    collect_env_info,
    configure_libraries,
    default_argument_parser,
    default_setup,
    seed_all_rng,
    setup_logger,
)
from .solver import build_lr_scheduler, build_optimizer
from .train_loop import Trainer

__all__ = [
    "comm",
    "check_config",
    "collect_env_info",
    "configure_libraries",
    "default_argument_parser",
    "default_setup",
    "seed_all_rng",
    "setup_logger",
    "build_optimizer",
    "build_lr_scheduler",
    "Trainer",
    "DefaultPredictor",
]


def __getattr__(name):  # DefaultPredictor imports the model code; load it on first use
    if name == "DefaultPredictor":
        from .predictor import DefaultPredictor

        return DefaultPredictor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
