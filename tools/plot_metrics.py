#!/usr/bin/env python
"""Draw training curves (`detection.cli.plot_metrics`; installed as ``litedet-plot-metrics``)."""
import sys

from detection.cli.plot_metrics import main

if __name__ == "__main__":
    sys.exit(main())
