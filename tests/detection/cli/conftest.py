"""The tools called in-process set up litedet's logging (console handlers on the stdout of
the moment, which pytest's capture replaces per test): each test ends with the handlers
removed, so a later test in the same worker never logs into a closed stream."""
import logging

import pytest


@pytest.fixture(autouse=True)
def _reset_litedet_logging():
    yield
    for name in ("detection", "backbones", "fvcore", "__main__"):  # setup_logger's loggers
        log = logging.getLogger(name)
        log.handlers.clear()
        log.propagate = True


@pytest.fixture
def train_net():
    """`detection.cli.train_net` (its logging is reset after the test like every tool's)."""
    from detection.cli import train_net

    return train_net
