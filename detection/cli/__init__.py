"""Command-line front ends of litedet, one module per tool.

Each module has ``build_parser() -> argparse.ArgumentParser`` and
``main(argv=None) -> int`` (the exit status). ``tools/<tool>.py`` (and
``datasets/prepare.py``) only call ``main``, and so do the ``litedet-*`` console commands
declared in setup.cfg. A module here parses the command line, calls the library
(`detection.deploy`, `detection.data`, `detection.engine`, `backbones`, ...), prints, and
turns expected failures into one line on stderr and a documented exit status; what another
program could reuse belongs in the library. `common` holds what several tools share.
"""
