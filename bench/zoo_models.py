"""The models of the zoo (bench/zoo.py): one per torchvision family, the
smallest of each, weights=None, with the small inputs they are exported
and compared at.  Pure data plus the builder, so the driver can list them
without importing torch; the export child (bench/zoo_export.py) builds
them under the torch being measured.

An input is ("image", shape): one tensor; ("images", shape): a list of
one image, as torchvision's detection models take; ("pair", shape): two
tensors (RAFT's two frames).
"""

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
    return {"image": dims, "images": f"[{dims}]", "pair": f"2x {dims}"}[kind]


def build(name):
    """(model, args, input names) for torch.onnx.export, seeded.  Raises
    AttributeError when this torchvision has no such model."""
    import torch
    import torchvision

    family, sub, kwargs, (kind, shape) = MODELS[name]
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
