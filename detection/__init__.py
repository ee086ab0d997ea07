"""litedet detection: detectors, data, evaluation and training on top of `backbones`."""
