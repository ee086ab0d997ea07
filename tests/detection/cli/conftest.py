"""Fixtures of the tool tests."""
import logging

import pytest


@pytest.fixture
def train_net():
    """`detection.cli.train_net`; the log handlers its ``default_setup`` attaches are removed
    afterwards, so that later tests' logs are not written to this test's files."""
    from detection.cli import train_net

    yield train_net
    for name in ("detection", "backbones", "fvcore", "__main__"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
