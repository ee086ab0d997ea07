"""What the command-line front ends share."""
from __future__ import annotations

import os

__all__ = ["REPO_ROOT"]

#: The checkout this package runs from (litedet is installed in editable mode,
#: ``pip install -e .``): the tools find ``configs/`` and ``datasets/`` there.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
