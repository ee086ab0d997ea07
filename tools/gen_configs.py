#!/usr/bin/env python
"""Regenerate configs/Misc/ (`detection.cli.gen_configs`)."""
import sys

from detection.cli.gen_configs import main

if __name__ == "__main__":
    sys.exit(main())
