#!/usr/bin/env python
"""Train or evaluate a detector (`detection.cli.train_net`; installed as ``litedet-train``)."""
import sys

from detection.cli.train_net import main

if __name__ == "__main__":
    sys.exit(main())
