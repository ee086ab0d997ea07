"""A short run of the Light-Head COCO protocol (every proposal as a training RoI, joint
OHEM, smooth-L1 beta 1, border anchors ignored, the x3 LR on the thin-map conv) on a tiny
generated litedet_shapes: it trains, without a non-finite loss."""
import json
import math
import os

import pytest
import torch

from detection.cli.common import REPO_ROOT
from detection.config import load_config
from detection.engine import Trainer


@pytest.fixture()
def shapes_root(tmp_path, monkeypatch):
    from detection.data.shapes import generate_shapes_dataset

    root = tmp_path / "datasets"
    generate_shapes_dataset(str(root), num_train=8, num_val=2, image_size=(128, 160), seed=0)
    monkeypatch.setenv("LITEDET_DATASETS", str(root))
    return root


def test_lighthead_protocol_trains_on_every_proposal(shapes_root, tmp_path):
    torch.manual_seed(0)
    cfg = load_config(
        os.path.join(REPO_ROOT, "configs", "COCO-LightHead", "lighthead_shufflenet_v2_0.5x.yaml"),
        [
            "MODEL.BACKBONE.FREEZE_AT", "0", "MODEL.BACKBONE.NORM", "BN", "MODEL.ROI_HEADS.NUM_CLASSES", "5",
            "MODEL.LIGHT_HEAD.FC_DIM", "256",
            "DATASETS.TRAIN", "('litedet_shapes_train',)", "DATASETS.TEST", "()",
            "INPUT.MIN_SIZE_TRAIN", "(128,)", "INPUT.MAX_SIZE_TRAIN", "200",
            "SOLVER.IMS_PER_BATCH", "2", "SOLVER.MAX_ITER", "4", "SOLVER.WARMUP_ITERS", "2", "SOLVER.STEPS", "(3,)",
            "SOLVER.CHECKPOINT_PERIOD", "100", "DATALOADER.NUM_WORKERS", "0", "SEED", "0",
            "OUTPUT_DIR", str(tmp_path / "out"),
        ],
    )
    assert cfg.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE == -1 and cfg.MODEL.LIGHT_HEAD.OHEM
    trainer = Trainer(cfg, log_period=1)
    heads = trainer.unwrapped_model.roi_heads
    seen = []
    select = heads.select_training_samples

    def recording(proposals, targets):
        out = select(proposals, targets)
        seen.append(([len(p) for p in proposals], [len(t["boxes"]) for t in targets], [len(r) for r in out[0]]))
        return out

    heads.select_training_samples = recording
    neck = {id(p) for p in trainer.unwrapped_model.neck.conv.parameters()}
    tripled = {id(p) for g in trainer.optimizer.param_groups if g["lr_factor"] == 3.0 for p in g["params"]}
    assert tripled == neck
    before = {n: p.detach().clone() for n, p in trainer.unwrapped_model.named_parameters()}

    trainer.train()

    assert len(seen) == 4
    for proposals, gts, rois in seen:  # every proposal and ground-truth box, no sampling
        assert rois == [p + g for p, g in zip(proposals, gts)] and max(proposals) > 300
    lines = [json.loads(x) for x in (tmp_path / "out" / "metrics.json").read_text().splitlines()]
    assert [x["iteration"] for x in lines] == [0, 1, 2, 3]
    for line in lines:
        losses = {k: v for k, v in line.items() if k.startswith("loss_")}
        assert set(losses) == {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg"}
        assert all(math.isfinite(v) for v in losses.values()) and line["total_loss"] > 0
    assert lines[0]["lr"] == pytest.approx(0.01 / 3) and lines[3]["lr"] == pytest.approx(0.001)
    after = dict(trainer.unwrapped_model.named_parameters())
    assert not torch.equal(after["neck.conv.col_first.0.weight"], before["neck.conv.col_first.0.weight"])
