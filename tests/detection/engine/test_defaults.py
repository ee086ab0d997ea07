"""default_argument_parser, default_setup and the single-process comm helpers."""
import logging

import pytest
import torch

from detection.config import get_cfg, load_config
from detection.engine import comm, default_argument_parser, default_setup, seed_all_rng


def test_parser_flags_and_trailing_overrides():
    args = default_argument_parser().parse_args(
        ["--config-file", "a.yaml", "--eval-only", "MODEL.WEIGHTS", "x.pth", "SOLVER.BASE_LR", "0.1"]
    )
    assert args.config_file == "a.yaml" and args.eval_only and not args.resume
    assert args.opts == ["MODEL.WEIGHTS", "x.pth", "SOLVER.BASE_LR", "0.1"]
    args = default_argument_parser().parse_args(["--resume"])
    assert args.resume and args.config_file == "" and args.opts == []
    with pytest.raises(SystemExit):
        default_argument_parser().parse_args(["--num-gpus", "2"])  # torchrun is used instead


def test_comm_single_process():
    assert comm.get_world_size() == 1 and comm.get_rank() == 0 and comm.get_local_rank() == 0
    assert comm.is_main_process()
    comm.synchronize()
    assert comm.all_gather({"a": 1}) == [{"a": 1}]
    d = {"x": torch.tensor(2.0)}
    assert comm.reduce_dict(d) is d


def test_default_setup_writes_config_log_and_seeds(tmp_path):
    cfg = get_cfg()
    cfg.OUTPUT_DIR = str(tmp_path / "out")
    cfg.SEED = 123
    cfg.SOLVER.BASE_LR = 0.0123
    try:
        seed = default_setup(cfg, default_argument_parser().parse_args([]))
        assert seed == 123
        a = torch.rand(3)
        seed_all_rng(123)
        assert torch.equal(a, torch.rand(3))
        log = (tmp_path / "out" / "log.txt").read_text()
        assert "Using seed 123" in log and "torch" in log and "Running with full config" in log
        reloaded = load_config(str(tmp_path / "out" / "config.yaml"))
        assert reloaded.SOLVER.BASE_LR == pytest.approx(0.0123)

        cfg.SEED = -1
        seed = default_setup(cfg)
        assert seed >= 0
        assert f"Using seed {seed} (random, SEED < 0)" in (tmp_path / "out" / "log.txt").read_text()
    finally:  # leave logging as pytest expects it
        for name in ("detection", "backbones", "fvcore", "__main__"):
            lg = logging.getLogger(name)
            for h in list(lg.handlers):
                if getattr(h, "_litedet", False):
                    lg.removeHandler(h)
            lg.propagate = True
            lg.setLevel(logging.NOTSET)
