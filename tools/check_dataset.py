#!/usr/bin/env python
"""Validate a detection dataset (`detection.cli.check_dataset`; installed as ``litedet-check-dataset``)."""
import sys

from detection.cli.check_dataset import main

if __name__ == "__main__":
    sys.exit(main())
