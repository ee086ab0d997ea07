#!/usr/bin/env python
"""Time a detector, backbone or classifier (`detection.cli.benchmark`; installed as ``litedet-benchmark``)."""
import sys

from detection.cli.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
