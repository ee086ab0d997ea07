#!/usr/bin/env python
"""Export a detector and check it against PyTorch (`detection.cli.export`; installed as ``litedet-export``)."""
import sys

from detection.cli.export import main

if __name__ == "__main__":
    sys.exit(main())
