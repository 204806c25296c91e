"""The models of the zoo (bench/zoo.py): one per torchvision family, the
smallest of each, weights=None, with the small inputs they are exported
and compared at.  Pure data plus the builder, so the driver can list them
without importing torch; the export child (bench/zoo_export.py) builds
them under the torch being measured.

Where a model's seeded outputs do not depend on its input, prepare()
re-initialises it (zero weights redrawn, then BatchNorm statistics from a
seeded batch) and says so.

An input is ("image", shape): one tensor; ("images", shape): a list of
one image, as torchvision's detection models take; ("pair", shape): two
tensors (RAFT's two frames); ("tokens", shape): token ids and an
attention mask (bench/zoo_hub.py).

Besides torchvision's, the models of timm, transformers and ultralytics
(bench/zoo_hub.py's HUB_MODELS; their source is the entry's second field).
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from zoo_hub import HUB_MODELS, NOT_ON_TORCH, SOURCES  # noqa: E402

# name: (family, torchvision submodule, builder kwargs, input)
MODELS = {
    # Classification, 64x64 where the model takes it; alexnet and vgg pool
    # adaptively to 6x6 and 7x7, which the ONNX exporters take only from a
    # multiple of that size, so they get 224 as their users give them;
    # maxvit's partitions need 224.
    "alexnet": ("classification", "", {}, ("image", (1, 3, 224, 224))),
    "convnext_tiny": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "densenet121": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "efficientnet_b0": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "efficientnet_v2_s": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "googlenet": ("classification", "", {"init_weights": True}, ("image", (1, 3, 64, 64))),
    "inception_v3": ("classification", "", {"init_weights": True}, ("image", (1, 3, 96, 96))),
    "maxvit_t": ("classification", "", {}, ("image", (1, 3, 224, 224))),
    "mnasnet0_5": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "mobilenet_v2": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "mobilenet_v3_small": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "regnet_y_400mf": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "resnet18": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "resnext50_32x4d": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "shufflenet_v2_x0_5": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "squeezenet1_1": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "swin_t": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "swin_v2_t": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    "vgg11": ("classification", "", {}, ("image", (1, 3, 224, 224))),
    "vit_b_16": ("classification", "", {"image_size": 64}, ("image", (1, 3, 64, 64))),
    "wide_resnet50_2": ("classification", "", {}, ("image", (1, 3, 64, 64))),
    # Detection: one 320x320 image, every detection kept (score threshold
    # 0) up to 20 per image, so the outputs are not empty.
    "fasterrcnn_mobilenet_v3_large_320_fpn": (
        "detection", "detection",
        {"box_score_thresh": 0.0, "box_detections_per_img": 20}, ("images", (3, 320, 320))),
    "fcos_resnet50_fpn": (
        "detection", "detection",
        {"score_thresh": 0.0, "detections_per_img": 20, "min_size": 320, "max_size": 320},
        ("images", (3, 320, 320))),
    "retinanet_resnet50_fpn": (
        "detection", "detection",
        {"score_thresh": 0.0, "detections_per_img": 20, "min_size": 320, "max_size": 320},
        ("images", (3, 320, 320))),
    "ssd300_vgg16": ("detection", "detection", {"score_thresh": 0.0, "detections_per_img": 20},
                     ("images", (3, 300, 300))),
    "ssdlite320_mobilenet_v3_large": (
        "detection", "detection", {"score_thresh": 0.0, "detections_per_img": 20},
        ("images", (3, 320, 320))),
    "keypointrcnn_resnet50_fpn": (
        "detection", "detection",
        {"box_score_thresh": 0.0, "box_detections_per_img": 20, "min_size": 320, "max_size": 320},
        ("images", (3, 320, 320))),
    "maskrcnn_resnet50_fpn": (
        "detection", "detection",
        {"box_score_thresh": 0.0, "box_detections_per_img": 20, "min_size": 320, "max_size": 320},
        ("images", (3, 320, 320))),
    # Segmentation, 128x128.
    "deeplabv3_mobilenet_v3_large": ("segmentation", "segmentation", {},
                                     ("image", (1, 3, 128, 128))),
    "fcn_resnet50": ("segmentation", "segmentation", {}, ("image", (1, 3, 128, 128))),
    "lraspp_mobilenet_v3_large": ("segmentation", "segmentation", {},
                                  ("image", (1, 3, 128, 128))),
    # Video, 8 frames of 64x64; s3d's last pooling is 2x7x7 (16 frames of
    # 224x224); mvit's positional sizes follow its input.
    "r3d_18": ("video", "video", {}, ("image", (1, 3, 8, 64, 64))),
    "mc3_18": ("video", "video", {}, ("image", (1, 3, 8, 64, 64))),
    "r2plus1d_18": ("video", "video", {}, ("image", (1, 3, 8, 64, 64))),
    "s3d": ("video", "video", {}, ("image", (1, 3, 16, 224, 224))),
    "mvit_v2_s": ("video", "video", {"spatial_size": (64, 64), "temporal_size": 8},
                  ("image", (1, 3, 8, 64, 64))),
    "swin3d_t": ("video", "video", {}, ("image", (1, 3, 8, 64, 64))),
    # Optical flow: two 128x128 frames, 4 flow updates, the last flow.
    "raft_small": ("optical_flow", "optical_flow", {}, ("pair", (1, 3, 128, 128))),
}

MODELS.update(HUB_MODELS)

FAMILIES = sorted({f for f, _, _, _ in MODELS.values()})

# Parameters perturbed with this noise (seeded) after construction: with
# torchvision's initialisation the mobilenet and R-CNN detectors give tied
# scores, and the order of tied detections is arbitrary (as in
# tests/export/test_real_models.py); the sigmoid heads of retinanet and
# fcos already give distinct scores.
NOISE = {name: 0.05 for name, (family, _, _, _) in MODELS.items()
         if family == "detection" and not name.startswith(("retinanet", "fcos"))}

# RAFT's refinement loop runs this many times (12 by default).
RAFT_UPDATES = 4


def describe_input(name):
    kind, shape = MODELS[name][3]
    dims = "x".join(str(d) for d in shape)
    return {"image": dims, "images": f"[{dims}]", "pair": f"2x {dims}",
            "tokens": f"{dims} ids+mask"}[kind]


def is_hub(name):
    return MODELS[name][1] in SOURCES


def unavailable_on(name, torch_series):
    """Why model name cannot be built under torch torch_series ("1.13"),
    or None."""
    return NOT_ON_TORCH.get(torch_series) if is_hub(name) else None


def build(name):
    """(model, args, input names) for torch.onnx.export, seeded, before
    prepare().  Raises AttributeError when this torchvision has no such
    model."""
    import torch

    family, sub, kwargs, (kind, shape) = MODELS[name]
    if sub in SOURCES:
        import zoo_hub

        model = zoo_hub.build(name)
        if kind == "tokens":
            ids, mask = zoo_hub.tokens(shape, 1)
            return model, (ids, mask), {"input_ids": ids, "attention_mask": mask}
        torch.manual_seed(1)
        x = torch.rand(*shape)
        return model, (x,), {"input": x}
    import torchvision

    module = getattr(torchvision.models, sub) if sub else torchvision.models
    builder = getattr(module, name)
    torch.manual_seed(0)
    extra = {"weights_backbone": None} if family in ("detection", "segmentation") else {}
    if family == "segmentation":
        extra["aux_loss"] = False
    model = builder(weights=None, **extra, **kwargs).eval()
    if name in NOISE:
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p) * NOISE[name])
    if name == "raft_small":
        model = _LastFlow(model)
    torch.manual_seed(1)
    if kind == "image":
        x = torch.rand(*shape)
        return model, (x,), {"input": x}
    if kind == "images":
        x = torch.rand(*shape)
        return model, ([x],), {"image": x}
    a, b = torch.rand(*shape), torch.rand(*shape)
    return model, (a, b), {"image1": a, "image2": b}


# With weights=None some models' outputs do not depend on their input, and
# an engine that computes anything near zero or near a constant matches
# them: vit_b_16's head is zero-initialised (its output is 0); in eval mode
# an untrained BatchNorm (running mean 0, variance 1) is the identity, so
# with torchvision's small initial weights the signal of the mobilenets,
# efficientnets, mnasnet, shufflenet, googlenet, s3d and the R-CNNs'
# backbones vanishes on the way (the output is the head's bias, below
# 1e-5, or no box at all).  prepare() re-initialises such a model, and only
# such a model, in two seeded steps, each only when the outputs still do
# not depend on the input.
SECOND_INPUT_SEED = 2
REDRAW_SEED = 3
CALIBRATION_SEED = 4
# A batch of 2 left efficientnet_v2_s's deep stages with statistics of 8
# values a channel, which amplified rounding: its float32 output differed
# from float64's by 41% of its largest value (1e-5 at 8).
CALIBRATION_BATCH = 8


def prepare(model, args, family, kind, shape):
    """Makes the model's outputs depend on its input where they do not:
    outputs "do not depend" when the zoo's own comparison (zoo.compare)
    passes the outputs of a second seeded input against those of the
    zoo's input.  Then (1) every Linear or Conv whose weight is entirely
    zero gets a seeded normal of std 1/sqrt(fan_in), its bias kept; if
    that is not enough, (2) every BatchNorm's running statistics become
    those of one seeded batch of CALIBRATION_BATCH random inputs (as a
    trained network's describe its activations).  Returns {"degenerate":
    whether the outputs still do not depend on the input, "reinit": what
    was done (a list, empty for a model left as built)}."""
    import torch

    second = _seeded_input(kind, shape, 1, SECOND_INPUT_SEED)
    reinit = []
    if not _indistinct(model, args, second, family):
        return {"degenerate": False, "reinit": reinit}
    redrawn = _redraw_zero_weights(model)
    if redrawn:
        reinit.append("zero weights redrawn: " + ", ".join(redrawn))
        if not _indistinct(model, args, second, family):
            return {"degenerate": False, "reinit": reinit}
    norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if norms:
        batch = _seeded_input(kind, shape, CALIBRATION_BATCH, CALIBRATION_SEED)
        _calibrate(model, norms, batch)
        n = len(norms)
        reinit.append(f"BatchNorm statistics of a seeded batch: {n} layer{'s' * (n != 1)}")
    return {"degenerate": _indistinct(model, args, second, family), "reinit": reinit}


def finish(name, model):
    """The prepared model as it is exported (bench/zoo_hub.py's finish:
    ultralytics' models fused)."""
    if is_hub(name):
        import zoo_hub

        return zoo_hub.finish(name, model)
    return model


def _seeded_input(kind, shape, batch, seed):
    """Arguments of the model's input kind with batch images (a batch of
    that size; for "images", a list of that many), drawn from seed."""
    import torch

    if kind == "tokens":
        import zoo_hub

        return zoo_hub.tokens((batch,) + tuple(shape[1:]), seed)
    g = torch.Generator().manual_seed(seed)
    if kind == "images":
        return ([torch.rand(*shape, generator=g) for _ in range(batch)],)
    n = 2 if kind == "pair" else 1
    return tuple(torch.rand(batch, *shape[1:], generator=g) for _ in range(n))


def _indistinct(model, args, other, family):
    """Whether the zoo's comparison passes the model's outputs on other
    against its outputs on args."""
    import torch
    from zoo import compare

    with torch.no_grad():
        a, b = flatten(model(*args)), flatten(model(*other))
    names = [n for n, _ in a]
    return compare(names, [t.numpy() for _, t in a], [t.numpy() for _, t in b], family)["ok"]


def _redraw_zero_weights(model):
    """Gives every Linear and Conv whose weight is entirely zero a seeded
    normal of std 1/sqrt(fan_in); returns their names."""
    import torch

    g = torch.Generator().manual_seed(REDRAW_SEED)
    names = []
    with torch.no_grad():
        for n, m in model.named_modules():
            if (isinstance(m, (torch.nn.Linear, torch.nn.modules.conv._ConvNd))
                    and not bool(m.weight.any())):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / fan_in ** 0.5)
                names.append(n)
    return names


def _calibrate(model, norms, batch):
    """Sets the running statistics of norms to those of one forward pass on
    batch: only the BatchNorms run in training mode, with a cumulative
    average (momentum None), which after one batch is that batch's."""
    import torch

    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    with torch.no_grad():
        model(*batch)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
        m.eval()


def flatten(out, prefix=""):
    """(name, tensor) pairs in the order torch.onnx lays out outputs: lists
    and tuples in order, dicts by insertion order."""
    if isinstance(out, dict):
        return [p for k, v in out.items() for p in flatten(v, f"{prefix}{k}.")]
    if isinstance(out, (list, tuple)):
        return [p for i, v in enumerate(out) for p in flatten(v, f"{prefix}{i}.")]
    return [(prefix.rstrip("."), out)]


def _last_flow_class():
    import torch

    class LastFlow(torch.nn.Module):
        """RAFT as exported for inference: the last of its flow estimates."""

        def __init__(self, raft):
            super().__init__()
            self.raft = raft

        def forward(self, image1, image2):
            return self.raft(image1, image2, num_flow_updates=RAFT_UPDATES)[-1]

    return LastFlow


def _LastFlow(raft):
    return _last_flow_class()(raft)
