#!/usr/bin/env python
"""Draw detections on images, videos or a webcam (`detection.cli.demo`; installed as ``litedet-demo``)."""
import sys

from detection.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
