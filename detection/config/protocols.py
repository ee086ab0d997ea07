"""The papers' training and test protocols, setting by setting: where each value was read
(paper section, or the authors' file and line at a named commit) and the config key that
holds it in the shipped configs.

One table feeds both docs/protocols.md (its tables are rendered by ``tools/gen_configs.py``)
and tests/configs/test_protocols.py, which loads every shipped config of a protocol and
asserts each pinned value, so a config that drifts from its paper fails CI.
"""
from __future__ import annotations

import fnmatch
import math
import os
from dataclasses import dataclass
from typing import Any, Dict, Tuple

__all__ = ["SOURCES", "Setting", "Protocol", "PROTOCOLS", "same_value", "format_value", "render_table"]

#: Short names used in the tables -> what they are (repository and commit, or paper).
SOURCES: Dict[str, str] = {
    "LH": "zengarden/light_head_rcnn @ 790f94e4e1481fbc403b101a763d4a9df56ee32a",
    "LH-exp": "LH experiments/lizeming/light_head_rcnn.ori_res101.coco.ps_roialign/ (the README's best row, "
    "40.0 mmAP, \"+align pooling + nms0.5\")",
    "PFR": "rbgirshick/py-faster-rcnn @ 781a917b378dbfdedb45b6a56189a31982da1b43",
    "PFR-coco": "PFR models/coco/VGG16/faster_rcnn_end2end/",
    "SNS": "megvii-model/ShuffleNet-Series @ aa91feb71b01f28d0b8da3533d20a3edb11b1810",
    "FD": "qinzheng93/FD-MobileNet @ f4531497703c76f6f8775c8f784295a64305208e",
    "SW": "cvtower/SeesawNet_pytorch @ 767892c3345ef690714082a3c0614ededc141a80 (code/imagenet.py, from "
    "pytorch/examples)",
    "ShuffleNet v1": "Zhang et al., ShuffleNet (CVPR 2018), seed 000",
    "ShuffleNet v2": "Ma et al., ShuffleNet V2 (ECCV 2018), seed 001",
    "FD-MobileNet": "Qin et al., FD-MobileNet (ICIP 2018), seed 004",
    "SeesawNet": "Zhang, Seesaw-Net (arXiv 1905.03672), seed 003",
    "Light-Head": "Li et al., Light-Head R-CNN (arXiv 1711.07264); its text is not in our seeds, values marked "
    "(secondary) come from two summaries that agree (notes in docs/protocols.md)",
}


@dataclass(frozen=True)
class Setting:
    """One row: ``name`` (what it is, the authors' value), ``source`` (where it was read),
    ``values`` (config key -> the value every config of the protocol must hold; empty when
    the setting lives in code), ``code`` (where the code implements it, or the known
    difference), ``applies_to`` (fnmatch pattern on the config's file name; "" = all)."""

    name: str
    source: str
    values: Tuple[Tuple[str, Any], ...] = ()
    code: str = ""
    applies_to: str = ""

    def applies(self, config_path: str) -> bool:
        return not self.applies_to or fnmatch.fnmatch(os.path.basename(config_path), self.applies_to)


@dataclass(frozen=True)
class Protocol:
    """A paper's protocol: ``configs`` are glob patterns (from the checkout root) of the
    shipped configs that follow it; ``schema`` is "detection" or "classification"."""

    slug: str
    title: str
    configs: Tuple[str, ...]
    schema: str
    settings: Tuple[Setting, ...]


def _s(name: str, source: str, *values: Tuple[str, Any], code: str = "", applies_to: str = "") -> Setting:
    return Setting(name, source, tuple(values), code, applies_to)


_LIGHT_HEAD = Protocol(
    slug="lighthead-coco",
    title="Light-Head R-CNN on COCO (ShuffleNet v2 paper, Table 7)",
    configs=("configs/COCO-LightHead/*.yaml",),
    schema="detection",
    settings=(
        _s("Detector: Light-Head R-CNN, \"follow the same training and test protocols\"", "ShuffleNet v2 l.171",
           ("MODEL.META_ARCHITECTURE", "LightHeadRCNN")),
        _s("Train on COCO trainval minus minival (80k + 35k), test on minival (5k)", "LH README.md L24; LH-exp/config.py L62-69",
           ("DATASETS.TRAIN", ("coco_2017_train",)), ("DATASETS.TEST", ("coco_2017_val",))),
        _s("Images without ground truth are skipped", "LH-exp/dataset.py L145-147, L207-215",
           ("DATALOADER.FILTER_EMPTY_ANNOTATIONS", True)),
        _s("Input 800 short side, 1200 max, train and test (the authors' code: 1333 max)",
           "ShuffleNet v2 l.177, l.185; LH-exp/config.py L74-78",
           ("INPUT.MIN_SIZE_TRAIN", (800,)), ("INPUT.MAX_SIZE_TRAIN", 1200),
           ("INPUT.MIN_SIZE_TEST", 800), ("INPUT.MAX_SIZE_TEST", 1200)),
        _s("Horizontal flip, p = 0.5", "LH-exp/dataset.py L171-173", ("INPUT.RANDOM_FLIP", "horizontal")),
        _s("Backbone: BN frozen, first stages frozen (R-101: conv1 + block1)",
           "LH-exp/network_desp.py L36-43, L104-112; LH-exp/config.py L102",
           ("MODEL.BACKBONE.FREEZE_AT", 2), ("MODEL.BACKBONE.NORM", ""),
           code="NORM \"\" = FrozenBN when MODEL.BACKBONE.WEIGHTS is set"),
        _s("Anchors: scales 2-32 x stride 16 = 32-512 px, ratios 0.5, 1, 2 (15 per location)",
           "LH-exp/config.py L91-93; LH lib/detection_opr/rpn/generate_anchors.py L41-52",
           ("MODEL.ANCHOR_GENERATOR.SIZES", [[32, 64, 128, 256, 512]]),
           ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", [[0.5, 1.0, 2.0]])),
        _s("RPN 3x3 conv width 256 (small setting; R-101 code: 512)", "Light-Head (secondary); LH-exp/network_desp.py L138-141",
           ("MODEL.RPN.HEAD_CONV_DIM", 256)),
        _s("RPN labels: IoU >= 0.7 positive, < 0.3 negative; 256 anchors per image, <= 50% positive",
           "LH-exp/config.py L151-155",
           ("MODEL.RPN.IOU_THRESHOLDS", [0.3, 0.7]), ("MODEL.RPN.BATCH_SIZE_PER_IMAGE", 256),
           ("MODEL.RPN.POSITIVE_FRACTION", 0.5)),
        _s("Anchors crossing the image border get no RPN label (_allowed_border = 0)",
           "LH lib/detection_opr/rpn_batched/anchor_target_layer_without_boxweight.py L35-43",
           ("MODEL.RPN.BOUNDARY_THRESH", 0)),
        _s("Proposals in training: top 12000, NMS 0.7, top 2000", "LH-exp/config.py L156, L159-160",
           ("MODEL.RPN.NMS_THRESH", 0.7), ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", 12000), ("MODEL.RPN.POST_NMS_TOPK_TRAIN", 2000)),
        _s("Proposals at test: top 6000, NMS 0.7, top 1000", "LH-exp/config.py L165-167",
           ("MODEL.RPN.PRE_NMS_TOPK_TEST", 6000), ("MODEL.RPN.POST_NMS_TOPK_TEST", 1000)),
        _s("Thin feature map: large separable conv k = 15, C_mid = 64 (small setting; code: 256), 10 x 7 x 7 = 490 "
           "channels, ReLU after the sum", "Light-Head (secondary); LH-exp/network_desp.py L191-195; "
           "LH lib/detection_opr/rfcn_plus_plus/rfcn_plus_plus_opr.py L34-53",
           ("MODEL.LIGHT_HEAD.KERNEL_SIZE", 15), ("MODEL.LIGHT_HEAD.MID_CHANNELS", 64),
           ("MODEL.LIGHT_HEAD.CHANNELS_PER_BIN", 10), ("MODEL.LIGHT_HEAD.POOLER_RESOLUTION", 7)),
        _s("PS RoIAlign 7 x 7, 2 x 2 samples per bin: the max of the samples, no half-pixel offset",
           "LH-exp/network_desp.py L197-199; LH lib/lib_kernel/lib_psalign_pooling/psalign_pooling_op_gpu.cu.cc L127-166",
           code="known difference: the average of the 2 x 2 samples, half-pixel offset (see below)"),
        _s("R-CNN subnet: FC 2048 + ReLU, weights N(0, 0.01), bias 0; class FC N(0, 0.01), box FC N(0, 0.001)",
           "LH-exp/network_desp.py L129-130, L204-212; LH tools/train.py L97",
           ("MODEL.LIGHT_HEAD.FC_DIM", 2048), ("MODEL.LIGHT_HEAD.FC_INIT_STD", 0.01), code="detection/modeling/meta_arch.py LightHeadRCNN, roi_heads.py"),
        _s("Training RoIs: every post-NMS proposal plus every ground-truth box, no sampling (TRAIN.BATCH_SIZE = -1)",
           "LH-exp/config.py L125, L136; LH lib/detection_opr/rpn_batched/proposal_target_layer.py L33-38, L43-44, L155-165",
           ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", -1)),
        _s("RoI labels: IoU >= 0.5 foreground, [0, 0.5) background", "LH-exp/config.py L130-132",
           ("MODEL.ROI_HEADS.IOU_THRESHOLDS", [0.5])),
        _s("OHEM keeps 256 x images per GPU (2) RoIs, ranked over that GPU's RoIs together",
           "LH-exp/config.py L100, L137; LH-exp/network_desp.py L276-280; "
           "LH lib/detection_opr/utils/loss_opr_without_box_weight.py L74-78",
           ("MODEL.LIGHT_HEAD.OHEM", True), ("MODEL.LIGHT_HEAD.OHEM_TOPK", 256),
           code="ranked over the images of one process (IMS_PER_BATCH / processes)"),
        _s("OHEM ranks by cross-entropy + unweighted smooth-L1 (sigma 1) of the ground-truth class, foreground only",
           "LH lib/detection_opr/utils/loss_opr_without_box_weight.py L55-73",
           code="detection/modeling/roi_heads.py fast_rcnn_losses, hard_example_indices"),
        _s("Box loss smooth-L1, sigma = 1 (beta = 1 / sigma^2 = 1)",
           "LH lib/detection_opr/utils/loss_opr_without_box_weight.py L10-18, L55-56",
           ("MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", 1.0)),
        _s("Box targets class-specific, divided by stds (0.1, 0.1, 0.2, 0.2)", "LH-exp/config.py L139-144",
           ("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", (10.0, 10.0, 5.0, 5.0))),
        _s("Box loss x2, after the OHEM selection; both losses divided by the number kept",
           "LH-exp/network_desp.py L281; LH lib/detection_opr/utils/loss_opr_without_box_weight.py L83-86",
           ("MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT", 2.0)),
        _s("16 images per step: 8 GPUs x 2", "LH README.md L26; LH-exp/config.py L100", ("SOLVER.IMS_PER_BATCH", 16)),
        _s("LR 0.01 on the 16-image mean loss: 1.25e-3 per GPU x 8 GPUs, on the sum of tower gradients of loss / 8",
           "LH-exp/config.py L105; LH tools/train.py L116, L127-128, L163, L226",
           ("SOLVER.BASE_LR", 0.01)),
        _s("SGD momentum 0.9", "LH-exp/config.py L106; LH tools/train.py L75", ("SOLVER.MOMENTUM", 0.9)),
        _s("L2 1e-4 on weights, none on biases (BN frozen)", "LH-exp/config.py L107, L124; LH tools/train.py L96-98, L117-121",
           ("SOLVER.WEIGHT_DECAY", 0.0001), ("SOLVER.WEIGHT_DECAY_NORM", 0.0)),
        _s("Warm-up: 500 steps, linear from LR / 3", "LH-exp/config.py L111-112; LH tools/train.py L196-222",
           ("SOLVER.WARMUP_ITERS", 500), ("SOLVER.WARMUP_FACTOR", 1.0 / 3), ("SOLVER.WARMUP_METHOD", "linear")),
        _s("30 epochs of 80k images after the warm-up; LR x0.1 from epoch 19, x0.01 from epoch 25",
           "LH-exp/config.py L104, L110, L113-114; LH tools/train.py L224-227",
           ("SOLVER.STEPS", (95500, 125500)), ("SOLVER.MAX_ITER", 150500), ("SOLVER.GAMMA", 0.1)),
        _s("Gradient x3 on conv_new_* (the large separable conv, weights and biases)",
           "LH tools/train.py L133-142; LH-exp/network_desp.py L193",
           ("SOLVER.LR_MULTIPLIERS", [["neck.conv.*", 3.0]])),
        _s("Test: class score > 0.0", "LH-exp/config.py L81; LH-exp/test.py L81", ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.0)),
        _s("Test: NMS 0.5 per class", "LH-exp/config.py L83; LH-exp/test.py L87; LH README.md L34",
           ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.5)),
        _s("Test: 100 detections per image over all classes", "LH-exp/config.py L80; LH-exp/test.py L95-98",
           ("TEST.DETECTIONS_PER_IMAGE", 100)),
    ),
)

_PFR_COMMON = (
    _s("Detector: Faster R-CNN, \"the publicly released Caffe code ... with default settings\"", "ShuffleNet v1 l.139",
       ("MODEL.META_ARCHITECTURE", "FasterRCNN"), ("MODEL.FPN.ENABLED", False)),
    _s("Horizontally flipped copies of the training images", "PFR lib/fast_rcnn/config.py L61",
       ("INPUT.RANDOM_FLIP", "horizontal")),
    _s("Images without ground truth are dropped (filter_roidb)", "PFR lib/fast_rcnn/train.py L127-149",
       ("DATALOADER.FILTER_EMPTY_ANNOTATIONS", True)),
    _s("Anchor ratios 0.5, 1, 2", "PFR lib/rpn/generate_anchors.py L37-38",
       ("MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS", [[0.5, 1.0, 2.0]])),
    _s("RPN labels: IoU >= 0.7 positive, < 0.3 negative; 256 anchors per image, <= 50% positive",
       "PFR lib/fast_rcnn/config.py L102-110",
       ("MODEL.RPN.IOU_THRESHOLDS", [0.3, 0.7]), ("MODEL.RPN.BATCH_SIZE_PER_IMAGE", 256),
       ("MODEL.RPN.POSITIVE_FRACTION", 0.5)),
    _s("Anchors crossing the image border get no RPN label (allowed_border 0)", "PFR lib/rpn/anchor_target_layer.py L49",
       ("MODEL.RPN.BOUNDARY_THRESH", 0)),
    _s("Proposals in training: top 12000, NMS 0.7, top 2000", "PFR lib/fast_rcnn/config.py L112-116",
       ("MODEL.RPN.NMS_THRESH", 0.7), ("MODEL.RPN.PRE_NMS_TOPK_TRAIN", 12000), ("MODEL.RPN.POST_NMS_TOPK_TRAIN", 2000)),
    _s("Proposals at test: top 6000, NMS 0.7, top 300", "PFR lib/fast_rcnn/config.py L158-162",
       ("MODEL.RPN.PRE_NMS_TOPK_TEST", 6000), ("MODEL.RPN.POST_NMS_TOPK_TEST", 300)),
    _s("Proposals smaller than 16 px (original image) removed", "PFR lib/fast_rcnn/config.py L118, L164; "
       "PFR lib/rpn/proposal_layer.py L129", code="known difference: torchvision removes boxes under 1e-3 px"),
    _s("128 RoIs per image, <= 25% foreground (ground-truth boxes added to the proposals)",
       "PFR lib/fast_rcnn/config.py L47, L50; PFR lib/rpn/proposal_target_layer.py L48-52",
       ("MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE", 128), ("MODEL.ROI_HEADS.POSITIVE_FRACTION", 0.25)),
    _s("RoI labels: IoU >= 0.5 foreground, [0, 0.5) background (end2end: BG_THRESH_LO 0.0)",
       "PFR lib/fast_rcnn/config.py L53, L57-58; PFR experiments/cfgs/faster_rcnn_end2end.yml L9",
       ("MODEL.ROI_HEADS.IOU_THRESHOLDS", [0.5])),
    _s("Box targets divided by stds (0.1, 0.1, 0.2, 0.2)",
       "PFR lib/fast_rcnn/config.py L82-89; PFR experiments/cfgs/faster_rcnn_end2end.yml L5",
       ("MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS", (10.0, 10.0, 5.0, 5.0))),
    _s("R-CNN box loss smooth-L1 sigma 1 (Caffe's default: loss_bbox has no sigma; the RPN's has 3), weight 1",
       "PFR-coco/train.prototxt L634-640 (RPN: L462-470)",
       ("MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA", 1.0), ("MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT", 1.0)),
    _s("Test: class score > 0.05", "PFR lib/fast_rcnn/test.py L227, L264", ("MODEL.ROI_HEADS.SCORE_THRESH_TEST", 0.05)),
    _s("Test: NMS 0.3 per class", "PFR lib/fast_rcnn/config.py L142; PFR lib/fast_rcnn/test.py L269",
       ("MODEL.ROI_HEADS.NMS_THRESH_TEST", 0.3)),
    _s("Test: 100 detections per image over all classes", "PFR lib/fast_rcnn/test.py L227, L275-283",
       ("TEST.DETECTIONS_PER_IMAGE", 100)),
)

_FASTER_RCNN_COCO = Protocol(
    slug="fasterrcnn-shufflenet-v1-coco",
    title="Faster R-CNN on COCO, 600 and 300 px (ShuffleNet v1 paper, Table 7)",
    configs=("configs/COCO-FasterRCNN/*.yaml",),
    schema="detection",
    settings=(
        _s("Train on COCO train+val minus 5000 minival, test on minival", "ShuffleNet v1 l.139",
           ("DATASETS.TRAIN", ("coco_2017_train",)), ("DATASETS.TEST", ("coco_2017_val",))),
        _s("Input 600 short side, 1000 max", "ShuffleNet v1 l.139; PFR lib/fast_rcnn/config.py L38, L41, L135, L138",
           ("INPUT.MIN_SIZE_TRAIN", (600,)), ("INPUT.MAX_SIZE_TRAIN", 1000),
           ("INPUT.MIN_SIZE_TEST", 600), ("INPUT.MAX_SIZE_TEST", 1000), applies_to="*_600.yaml"),
        _s("Input 300 short side (max not stated; 500 keeps PFR's ratio)", "ShuffleNet v1 l.139",
           ("INPUT.MIN_SIZE_TRAIN", (300,)), ("INPUT.MAX_SIZE_TRAIN", 500),
           ("INPUT.MIN_SIZE_TEST", 300), ("INPUT.MAX_SIZE_TEST", 500), applies_to="*_300.yaml"),
        _s("Anchors: scales 4-32 x 16 = 64-512 px (PFR's COCO models; 12 per location)",
           "PFR-coco/train.prototxt L398, L442, L500",
           ("MODEL.ANCHOR_GENERATOR.SIZES", [[64, 128, 256, 512]])),
    )
    + _PFR_COMMON
    + (
        _s("Schedule (not in the paper): PFR's COCO solver, LR 0.001 on 2-image steps (iter_size 2) = 5e-4 per image, "
           "x0.1 after 350k of 490k steps (980k images), momentum 0.9, weight decay 5e-4, no warm-up; stated for 16 images",
           "PFR-coco/solver.prototxt L2-9, L15; PFR experiments/scripts/faster_rcnn_end2end.sh L39",
           ("SOLVER.IMS_PER_BATCH", 16), ("SOLVER.BASE_LR", 0.008), ("SOLVER.STEPS", (43750,)),
           ("SOLVER.MAX_ITER", 61250), ("SOLVER.GAMMA", 0.1), ("SOLVER.MOMENTUM", 0.9),
           ("SOLVER.WARMUP_ITERS", 0), ("SOLVER.WEIGHT_DECAY", 0.0005)),
    ),
)

_FASTER_RCNN_VOC = Protocol(
    slug="fasterrcnn-fd-mobilenet-voc07",
    title="Faster R-CNN on PASCAL VOC 2007 (FD-MobileNet paper, Table 3)",
    configs=("configs/VOC-FasterRCNN/fasterrcnn_*.yaml",),
    schema="detection",
    settings=(
        _s("Train on VOC 2007 trainval, test on VOC 2007 test (11-point VOC07 AP)",
           "FD-MobileNet l.126; PFR lib/datasets/pascal_voc.py L275",
           ("DATASETS.TRAIN", ("voc_2007_trainval",)), ("DATASETS.TEST", ("voc_2007_test",)),
           ("MODEL.ROI_HEADS.NUM_CLASSES", 20)),
        _s("Input 600 short side (\"600x resolution\"), 1000 max (PFR)",
           "FD-MobileNet l.126; PFR lib/fast_rcnn/config.py L38, L41",
           ("INPUT.MIN_SIZE_TRAIN", (600,)), ("INPUT.MAX_SIZE_TRAIN", 1000),
           ("INPUT.MIN_SIZE_TEST", 600), ("INPUT.MAX_SIZE_TEST", 1000)),
        _s("15 epochs, batch 1; LR 1e-3, divided by 10 every 5 epochs (5011 images per epoch)", "FD-MobileNet l.126",
           ("SOLVER.IMS_PER_BATCH", 1), ("SOLVER.BASE_LR", 0.001), ("SOLVER.STEPS", (25055, 50110)),
           ("SOLVER.MAX_ITER", 75165), ("SOLVER.GAMMA", 0.1)),
        _s("Weight decay 4e-5", "FD-MobileNet l.126", ("SOLVER.WEIGHT_DECAY", 0.00004)),
        _s("No warm-up, momentum 0.9 (\"other hyper-parameter settings follow the original Faster R-CNN\")",
           "FD-MobileNet l.126; PFR models/pascal_voc/*/faster_rcnn_end2end/solver.prototxt",
           ("SOLVER.WARMUP_ITERS", 0), ("SOLVER.MOMENTUM", 0.9)),
        _s("Anchors: PFR's default scales 8-32 x 16 = 128, 256, 512 px (9 per location)",
           "PFR lib/rpn/anchor_target_layer.py L28; PFR lib/rpn/generate_anchors.py L37-38",
           ("MODEL.ANCHOR_GENERATOR.SIZES", [[128, 256, 512]])),
        _s("300 proposals sent to the R-CNN at test", "FD-MobileNet l.126; PFR lib/fast_rcnn/config.py L162",
           ("MODEL.RPN.POST_NMS_TOPK_TEST", 300)),
    )
    + _PFR_COMMON,
)

_SHUFFLENET_IMAGENET = Protocol(
    slug="imagenet-shufflenet",
    title="ImageNet classification: ShuffleNet v1 / v2 / v2* (ShuffleNet-Series release)",
    configs=("configs/ImageNet/shufflenet_*.yaml",),
    schema="classification",
    settings=(
        _s("Batch 1024, 300k iterations", "SNS ShuffleNetV2/train.py L66-67; ShuffleNet v1 l.79",
           ("SOLVER.IMS_PER_BATCH", 1024), ("SOLVER.MAX_ITER", 300000)),
        _s("LR 0.5, linear decay to 0", "ShuffleNet v1 l.79; SNS ShuffleNetV2/train.py L68, L152-153",
           ("SOLVER.BASE_LR", 0.5), ("SOLVER.LR_SCHEDULER_NAME", "LinearDecayLR"), ("SOLVER.BASE_LR_END", 0.0)),
        _s("Momentum 0.9; weight decay 4e-5 on weights of >= 2 dims only", "SNS ShuffleNetV2/train.py L69-70, L138-141; "
           "SNS ShuffleNetV2/utils.py L73-85",
           ("SOLVER.MOMENTUM", 0.9), ("SOLVER.WEIGHT_DECAY", 0.00004), ("SOLVER.WEIGHT_DECAY_NORM", 0.0)),
        _s("Label smoothing 0.1", "SNS ShuffleNetV2/train.py L142; SNS ShuffleNetV2/utils.py L6-19",
           ("MODEL.LABEL_SMOOTHING", 0.1)),
        _s("RandomResizedCrop(224), default scale (0.08, 1); colour jitter 0.4; flip",
           "SNS ShuffleNetV2/train.py L108-116", ("INPUT.CROP_SCALE", (0.08, 1.0)), ("INPUT.COLOR_JITTER", 0.4)),
        _s("Evaluation: short side 256, centre 224 crop", "SNS ShuffleNetV2/train.py L122-131",
           ("INPUT.MIN_SIZE_TEST", 256), ("INPUT.TEST_CROP_SIZE", 224)),
        _s("Classifier FC without bias", "SNS ShuffleNetV2/network.py L58; SNS ShuffleNetV1/network.py L63",
           code="backbones.classifier FAMILIES_WITHOUT_FC_BIAS"),
        _s("Dropout 0.2 before the classifier, v2 2.0x only", "SNS ShuffleNetV2/network.py L56-57",
           ("MODEL.DROPOUT", 0.2), applies_to="shufflenet_v2_2.0x.yaml"),
        _s("BN statistics re-estimated after training: int(1280000 / batch) batches, momentum 1 / k",
           "SNS ShuffleNetV2/train.py L184-191; SNS ShuffleNetV1/train.py L185, L190-193",
           ("TEST.PRECISE_BN.ENABLED", True), ("TEST.PRECISE_BN.NUM_ITER", 0)),
    ),
)

_FD_IMAGENET = Protocol(
    slug="imagenet-fd-mobilenet",
    title="ImageNet classification: FD-MobileNet and its MobileNet 0.125x baseline",
    configs=("configs/ImageNet/fd_mobilenet_*.yaml", "configs/ImageNet/mobilenet_v1_0.125x.yaml"),
    schema="classification",
    settings=(
        _s("90 epochs, batch 256 (the README: 120)", "FD-MobileNet l.106; FD README.md L70-75",
           ("SOLVER.MAX_EPOCHS", 90), ("SOLVER.IMS_PER_BATCH", 256)),
        _s("LR 0.1, divided by 10 every 30 epochs", "FD-MobileNet l.106; FD config/imagenet/sched-config/StepLR-30-0.1.json",
           ("SOLVER.BASE_LR", 0.1), ("SOLVER.LR_SCHEDULER_NAME", "EpochStepLR"), ("SOLVER.STEP_EPOCHS", 30),
           ("SOLVER.GAMMA", 0.1)),
        _s("Momentum 0.9, Nesterov (the README's command: SGD-120-nesterov.json)",
           "FD config/imagenet/optim-config/SGD-90-nesterov.json L2-7; FD README.md L35-40; "
           "FD pyvision/optim/optimizers.py L19-26",
           ("SOLVER.MOMENTUM", 0.9), ("SOLVER.NESTEROV", True)),
        _s("Weight decay 4e-5 on every parameter (model.parameters())",
           "FD-MobileNet l.106; FD pyvision/optim/optimizers.py L21-24",
           ("SOLVER.WEIGHT_DECAY", 0.00004), ("SOLVER.WEIGHT_DECAY_NORM", 0.00004)),
        _s("\"Slightly less aggressive\" crop: RandomResizedCrop(224, scale=(0.64, 1.0)) + flip, no colour jitter",
           "FD-MobileNet l.106; FD pyvision/dataloaders/ImageNet.py L61-67",
           ("INPUT.CROP_SCALE", (0.64, 1.0)), ("INPUT.COLOR_JITTER", 0.0)),
        _s("Evaluation: short side 256, centre 224 crop", "FD-MobileNet l.106",
           ("INPUT.MIN_SIZE_TEST", 256), ("INPUT.TEST_CROP_SIZE", 224)),
    ),
)

_SEESAW_IMAGENET = Protocol(
    slug="imagenet-seesaw",
    title="ImageNet classification: SeesawNet (shuffle and share, 0.5D / 1.0D)",
    configs=("configs/ImageNet/seesaw_*.yaml",),
    schema="classification",
    settings=(
        _s("Batch 96, momentum 0.9, weight decay 4e-5 on every parameter (model.parameters())",
           "SeesawNet l.143; SW L47, L63-66, L128-130",
           ("SOLVER.IMS_PER_BATCH", 96), ("SOLVER.MOMENTUM", 0.9), ("SOLVER.WEIGHT_DECAY", 0.00004),
           ("SOLVER.WEIGHT_DECAY_NORM", 0.00004)),
        _s("LR 0.045, multiplied by 0.98 every epoch", "SeesawNet l.143; SW L51-62, L354-358",
           ("SOLVER.BASE_LR", 0.045), ("SOLVER.LR_SCHEDULER_NAME", "EpochStepLR"), ("SOLVER.STEP_EPOCHS", 1),
           ("SOLVER.GAMMA", 0.98)),
        _s("400 epochs (the code's default: 480)", "SeesawNet l.143; SW L43", ("SOLVER.MAX_EPOCHS", 400)),
        _s("\"Inception\" augmentation: RandomResizedCrop(224), default scale (0.08, 1), + flip, no colour jitter",
           "SeesawNet l.141; SW L164-170", ("INPUT.CROP_SCALE", (0.08, 1.0)), ("INPUT.COLOR_JITTER", 0.0)),
        _s("Evaluation: short side 256, centre 224 crop (the paper: \"rescaling to 256*256\")",
           "SW L182-187; SeesawNet l.141",
           ("INPUT.MIN_SIZE_TEST", 256), ("INPUT.TEST_RESIZE_SQUARE", False), ("INPUT.TEST_CROP_SIZE", 224)),
    ),
)

PROTOCOLS: Tuple[Protocol, ...] = (
    _LIGHT_HEAD, _FASTER_RCNN_COCO, _FASTER_RCNN_VOC, _SHUFFLENET_IMAGENET, _FD_IMAGENET, _SEESAW_IMAGENET
)


# ---------------------------------------------------------------------------- values
def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def same_value(have: Any, want: Any) -> bool:
    """Config value ``have`` equals the pinned ``want``: lists and tuples alike, numbers
    to 1e-12 relative (YAML spells 1/3 as 0.3333333333333333)."""
    have, want = _plain(have), _plain(want)
    if isinstance(want, list):
        return isinstance(have, list) and len(have) == len(want) and all(same_value(h, w) for h, w in zip(have, want))
    if isinstance(want, bool) or isinstance(have, bool):
        return have is want
    if isinstance(want, (int, float)) and isinstance(have, (int, float)):
        return math.isclose(have, want, rel_tol=1e-12, abs_tol=1e-15)
    return have == want


def format_value(value: Any) -> str:
    """A value as the YAML configs spell it."""
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        return "[" + ", ".join(format_value(v) for v in value) + "]"
    if isinstance(value, float) and math.isclose(value, 1.0 / 3):
        return "1/3"
    return str(value)


def render_table(protocol: Protocol) -> str:
    """The protocol's Markdown table: setting | source | our config key | value."""
    lines = ["| setting | source | our config key | value |", "|---|---|---|---|"]
    for s in protocol.settings:
        keys = [f"`{k}`" for k, _ in s.values]
        values = [f"`{format_value(v)}`" for _, v in s.values]
        if s.code:
            keys.append("(code)" if not s.values else "")
            values.append(s.code)
        name = s.name + (f" (only `{s.applies_to}`)" if s.applies_to else "")
        lines.append(f"| {name} | {s.source} | {'<br>'.join(k for k in keys if k)} | {'<br>'.join(values)} |")
    return "\n".join(lines) + "\n"
