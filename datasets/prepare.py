#!/usr/bin/env python
"""Lay out COCO / VOC archives or a BCCD clone, or generate litedet_shapes.

`detection.cli.prepare_datasets`, installed as ``litedet-prepare-datasets``.
"""
import sys

from detection.cli.prepare_datasets import main

if __name__ == "__main__":
    sys.exit(main())
