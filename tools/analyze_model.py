#!/usr/bin/env python
"""Complexity of the registered backbones (`detection.cli.analyze_model`; installed as ``litedet-analyze``)."""
import sys

from detection.cli.analyze_model import main

if __name__ == "__main__":
    sys.exit(main())
