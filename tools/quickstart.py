#!/usr/bin/env python
"""The main job: train, evaluate, demo, time (`detection.cli.quickstart`; installed as ``litedet-quickstart``)."""
import sys

from detection.cli.quickstart import main

if __name__ == "__main__":
    sys.exit(main())
