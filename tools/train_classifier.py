#!/usr/bin/env python
"""Pretrain or evaluate a backbone's classifier.

`detection.cli.train_classifier`, installed as ``litedet-train-classifier``.
"""
import sys

from detection.cli.train_classifier import main

if __name__ == "__main__":
    sys.exit(main())
