"""Default configuration. Key names follow detectron2 wherever the meaning matches.

Sections beyond detectron2's: ``MODEL.BACKBONE.*`` names a registered litedet variant,
``MODEL.LIGHT_HEAD.*`` configures Light-Head R-CNN, ``DATASETS.REGISTER_*`` registers
user datasets, ``INPUT.AUG.*`` the albumentations training pipeline.
"""
from fvcore.common.config import CfgNode as CN

_C = CN()
_C.VERSION = 2

# ---------------------------------------------------------------------------- model
_C.MODEL = CN()
_C.MODEL.META_ARCHITECTURE = "LightHeadRCNN"  # or "FasterRCNN"
_C.MODEL.DEVICE = "cpu"
# Full detector weights (litedet checkpoint) to start from or to evaluate.
_C.MODEL.WEIGHTS = ""
# Input normalisation, RGB order, 0-255 scale (ImageNet statistics).
_C.MODEL.PIXEL_MEAN = [123.675, 116.28, 103.53]
_C.MODEL.PIXEL_STD = [58.395, 57.12, 57.375]

_C.MODEL.BACKBONE = CN()
_C.MODEL.BACKBONE.NAME = "shufflenet_v2_1.0x"  # any name from `backbones.list_backbones()`
# Stages frozen at the start (0 = none, 1 = stem, 2 = stem + first stage, ...).
_C.MODEL.BACKBONE.FREEZE_AT = 0
# ImageNet checkpoint for the backbone alone (any layout `backbones.weights` reads).
_C.MODEL.BACKBONE.WEIGHTS = ""
_C.MODEL.BACKBONE.WEIGHTS_LAYOUT = "auto"
# Stage feeding the RPN (and the C4 RoI pooler); "" = the stride-16 stage.
_C.MODEL.BACKBONE.RPN_FEATURE = ""
# Stage feeding Light-Head's thin feature map; "" = the last stride-32 stage.
_C.MODEL.BACKBONE.HEAD_FEATURE = ""
# BatchNorm handling: "" (auto: FrozenBN when WEIGHTS is set, else BN), "BN" (trainable),
# "FrozenBN" (frozen statistics, the usual choice with pretrained weights) or "SyncBN"
# (statistics over all GPUs under DDP; plain BN in a single process or on CPU).
_C.MODEL.BACKBONE.NORM = ""

_C.MODEL.FPN = CN()
_C.MODEL.FPN.ENABLED = False  # FasterRCNN only: FPN neck + multi-scale RoIAlign box head
_C.MODEL.FPN.IN_FEATURES = []  # [] = every stage of stride 8, 16 and 32
_C.MODEL.FPN.OUT_CHANNELS = 128

_C.MODEL.ANCHOR_GENERATOR = CN()
_C.MODEL.ANCHOR_GENERATOR.SIZES = [[32, 64, 128, 256, 512]]
_C.MODEL.ANCHOR_GENERATOR.ASPECT_RATIOS = [[0.5, 1.0, 2.0]]

_C.MODEL.RPN = CN()
_C.MODEL.RPN.HEAD_CONV_DIM = 256  # 3x3 conv width (Light-Head small setting)
_C.MODEL.RPN.IOU_THRESHOLDS = [0.3, 0.7]
_C.MODEL.RPN.BATCH_SIZE_PER_IMAGE = 256
_C.MODEL.RPN.POSITIVE_FRACTION = 0.5
_C.MODEL.RPN.NMS_THRESH = 0.7
_C.MODEL.RPN.PRE_NMS_TOPK_TRAIN = 12000
_C.MODEL.RPN.POST_NMS_TOPK_TRAIN = 2000
_C.MODEL.RPN.PRE_NMS_TOPK_TEST = 6000
_C.MODEL.RPN.POST_NMS_TOPK_TEST = 1000
# Anchors crossing the image border by more than this many pixels get no label (neither
# positive nor negative) in RPN training; -1 labels every anchor (detectron2's key and
# default; py-faster-rcnn and Light-Head R-CNN use 0).
_C.MODEL.RPN.BOUNDARY_THRESH = -1

_C.MODEL.ROI_HEADS = CN()
_C.MODEL.ROI_HEADS.NUM_CLASSES = 80
# Training RoIs per image, drawn at POSITIVE_FRACTION foreground (ground-truth boxes join the
# proposals first); -1 = every proposal and ground-truth box, no sampling (Light-Head R-CNN).
_C.MODEL.ROI_HEADS.BATCH_SIZE_PER_IMAGE = 512
_C.MODEL.ROI_HEADS.POSITIVE_FRACTION = 0.25
_C.MODEL.ROI_HEADS.IOU_THRESHOLDS = [0.5]
_C.MODEL.ROI_HEADS.SCORE_THRESH_TEST = 0.05
_C.MODEL.ROI_HEADS.NMS_THRESH_TEST = 0.5

_C.MODEL.ROI_BOX_HEAD = CN()
_C.MODEL.ROI_BOX_HEAD.POOLER_RESOLUTION = 14  # C4: 14x14 RoIAlign, then the last stage
_C.MODEL.ROI_BOX_HEAD.POOLER_SAMPLING_RATIO = 0
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_WEIGHTS = (10.0, 10.0, 5.0, 5.0)
_C.MODEL.ROI_BOX_HEAD.BBOX_REG_LOSS_WEIGHT = 1.0
# Smooth-L1 beta of the box loss (detectron2's key): quadratic below beta, linear above.
# The authors' sigma is beta = 1 / sigma**2 (py-faster-rcnn and Light-Head R-CNN: sigma 1,
# beta 1.0); the default is torchvision's 1/9.
_C.MODEL.ROI_BOX_HEAD.SMOOTH_L1_BETA = 1.0 / 9
_C.MODEL.ROI_BOX_HEAD.FC_DIM = 1024  # FPN box head (two FCs)

_C.MODEL.LIGHT_HEAD = CN()
_C.MODEL.LIGHT_HEAD.KERNEL_SIZE = 15
_C.MODEL.LIGHT_HEAD.MID_CHANNELS = 64  # 64 for small backbones, 256 for ResNet-101 ("large")
_C.MODEL.LIGHT_HEAD.CHANNELS_PER_BIN = 10  # thin feature map: 10 x 7 x 7 = 490 channels
_C.MODEL.LIGHT_HEAD.POOLER_RESOLUTION = 7
_C.MODEL.LIGHT_HEAD.FC_DIM = 2048
# The R-CNN FC's weights ~ N(0, FC_INIT_STD), biases 0: the authors' 0.01 for their 150k-iteration
# COCO schedule; 0 keeps PyTorch's default (uniform, fan-in scaled), which learns several times
# faster in runs of a few hundred iterations (quickstart, BCCD).
_C.MODEL.LIGHT_HEAD.FC_INIT_STD = 0.01
_C.MODEL.LIGHT_HEAD.OHEM = False  # keep the highest-loss RoIs only
# OHEM keeps OHEM_TOPK x (images in the process) RoIs, ranked over all RoIs of those images
# together (the authors' 256 x images per GPU; a DDP process = one GPU).
_C.MODEL.LIGHT_HEAD.OHEM_TOPK = 256

# ---------------------------------------------------------------------------- input
_C.INPUT = CN()
_C.INPUT.FORMAT = "RGB"
_C.INPUT.MIN_SIZE_TRAIN = (800,)
_C.INPUT.MIN_SIZE_TRAIN_SAMPLING = "choice"
_C.INPUT.MAX_SIZE_TRAIN = 1200
_C.INPUT.MIN_SIZE_TEST = 800
_C.INPUT.MAX_SIZE_TEST = 1200
# Training flips, each applied independently with p 0.5 after the resize: "none",
# "horizontal", "vertical" (detectron2's values) or "both" (horizontal and vertical).
_C.INPUT.RANDOM_FLIP = "horizontal"
# Training: turn the resized image (and its boxes) a quarter counter-clockwise with p 0.5,
# after the flips. With RANDOM_FLIP "both" every one of the 8 orientations is equally likely
# (for photos without an up, e.g. microscopy or aerial views).
_C.INPUT.RANDOM_ROTATE90 = False
# Refuse (or skip) images whose width*height exceeds this (decompression bombs).
_C.INPUT.MAX_IMAGE_PIXELS = 8192 * 8192
_C.INPUT.AUG = CN()
_C.INPUT.AUG.COLOR_JITTER = 0.0  # brightness/contrast/saturation strength, 0 = off
_C.INPUT.AUG.HUE = 0.0
_C.INPUT.AUG.MIN_VISIBILITY = 0.0  # boxes cropped below this fraction are dropped

# ---------------------------------------------------------------------------- data
_C.DATASETS = CN()
_C.DATASETS.TRAIN = ("coco_2017_train",)
_C.DATASETS.TEST = ("coco_2017_val",)
# User datasets, registered before TRAIN/TEST are looked up:
#   REGISTER_COCO: [[name, json_file, image_root], ...]
#   REGISTER_VOC:  [[name, voc_root, split, "class1,class2,..."], ...]  (classes optional)
_C.DATASETS.REGISTER_COCO = []
_C.DATASETS.REGISTER_VOC = []
# Image paths in annotation files (COCO file_name, VOC ids) must stay under the dataset's
# image root; True allows absolute paths and "../" (only for annotation files you trust).
_C.DATASETS.ALLOW_PATHS_OUTSIDE_ROOT = False

_C.DATALOADER = CN()
_C.DATALOADER.NUM_WORKERS = 2
_C.DATALOADER.ASPECT_RATIO_GROUPING = True
_C.DATALOADER.FILTER_EMPTY_ANNOTATIONS = False  # False keeps images without objects as negatives
# What a sample that cannot be used (missing/corrupt/oversized image, ...) does to a run:
# "error" stops it naming the file; "skip" logs and counts it and uses another sample,
# until more than MAX_BAD_SAMPLE_FRACTION of the samples drawn were bad (the fraction is
# taken over at least 100 draws, so early on up to 100 * fraction skips are allowed).
_C.DATALOADER.BAD_SAMPLE_POLICY = "error"
_C.DATALOADER.MAX_BAD_SAMPLE_FRACTION = 0.05
_C.DATALOADER.SKIP_BAD_SAMPLES = False  # deprecated alias: True means BAD_SAMPLE_POLICY "skip"

# ---------------------------------------------------------------------------- solver
_C.SOLVER = CN()
_C.SOLVER.IMS_PER_BATCH = 16  # total over all processes
_C.SOLVER.OPTIMIZER = "SGD"  # or "AdamW" (short from-scratch runs)
_C.SOLVER.BASE_LR = 0.02
_C.SOLVER.MOMENTUM = 0.9
_C.SOLVER.NESTEROV = False
_C.SOLVER.WEIGHT_DECAY = 1e-4
_C.SOLVER.WEIGHT_DECAY_NORM = 0.0
# Learning-rate factors by parameter name: [[pattern, factor], ...]. A trainable parameter
# whose full name (as in model.named_parameters(), e.g. "neck.conv.col_first.0.weight")
# matches a shell-style pattern (fnmatch: *, ?, [...]) trains at BASE_LR times the product
# of the factors of every pattern it matches; weight decay is unchanged. With SGD this
# equals multiplying the parameter's gradient, weight decay included, by the factor
# (Light-Head R-CNN's authors: x3 on the large separable conv). A pattern that matches no
# trainable parameter is an error.
_C.SOLVER.LR_MULTIPLIERS = []
_C.SOLVER.LR_SCHEDULER_NAME = "WarmupMultiStepLR"  # or "WarmupCosineLR"
# WarmupCosineLR decays to this LR at MAX_ITER (added by the engine; detectron2 name).
_C.SOLVER.BASE_LR_END = 0.0
_C.SOLVER.MAX_ITER = 90000
_C.SOLVER.STEPS = (60000, 80000)
_C.SOLVER.GAMMA = 0.1
_C.SOLVER.WARMUP_FACTOR = 1.0 / 1000
_C.SOLVER.WARMUP_ITERS = 1000
_C.SOLVER.WARMUP_METHOD = "linear"
_C.SOLVER.CHECKPOINT_PERIOD = 5000
# Keep only the newest K periodic model_XXXXXXX.pth files (0 = keep all); added by the engine.
_C.SOLVER.CHECKPOINT_MAX_KEEP = 0
# torch.compile the model for training (added by the engine; the first iterations are slow).
_C.SOLVER.COMPILE = False
_C.SOLVER.CLIP_GRADIENTS = CN()
_C.SOLVER.CLIP_GRADIENTS.ENABLED = False
_C.SOLVER.CLIP_GRADIENTS.CLIP_VALUE = 10.0
# Added by the engine (detectron2 names): "value" clips each gradient element to
# [-CLIP_VALUE, CLIP_VALUE]; "norm" rescales so the total NORM_TYPE-norm is <= CLIP_VALUE.
_C.SOLVER.CLIP_GRADIENTS.CLIP_TYPE = "value"
_C.SOLVER.CLIP_GRADIENTS.NORM_TYPE = 2.0
_C.SOLVER.AMP = CN()
_C.SOLVER.AMP.ENABLED = False
# Autocast dtype (added by the engine): "float16" (CUDA, with a GradScaler) or "bfloat16"
# (CUDA or CPU, no scaler needed).
_C.SOLVER.AMP.DTYPE = "float16"

# ---------------------------------------------------------------------------- test
_C.TEST = CN()
_C.TEST.EVAL_PERIOD = 0  # 0 = only at the end
_C.TEST.DETECTIONS_PER_IMAGE = 100

_C.OUTPUT_DIR = "./output"
_C.SEED = -1  # < 0: random seed, logged
_C.CUDNN_BENCHMARK = False
