"""The zoo's models from the hubs people deploy from (issue 21): timm,
transformers and ultralytics, at the versions scripts/requirements-zoo.txt
pins, built offline from their configs (transformers: tiny configs, few
layers and a small hidden size; ultralytics: its yaml) with seeded random
weights: nothing is downloaded (HF_HUB_OFFLINE is set before importing
transformers).  Pure data plus the builder, as bench/zoo_models.py, which
adds HUB_MODELS to its MODELS.

An entry is (family, source, spec, input), source one of SOURCES and spec
what the builder of that source takes:

- timm: {"model": timm's name, **create_model's keyword arguments}.
- transformers: {"model": the model class, "config": its config class,
  "kwargs": the config's, "outputs": the output fields returned, in
  order}; "submodule" takes an attribute of the model (Whisper's encoder).
- ultralytics: {"model": the task model class in ultralytics.nn.tasks,
  "yaml": its model yaml}; its head is in export mode (one tensor of
  predictions), and it is fused as ultralytics' exporter fuses it, after
  prepare() (bench/zoo_models.py) has given its BatchNorms statistics:
  finish().

Inputs: ("image", shape) a float tensor (images; Whisper's log-mel
features); ("tokens", (batch, length)) token ids below VOCAB and an
attention mask whose last PADDING positions are 0 (padding), both int64,
as a tokenizer gives them.
"""
import os

SOURCES = ("timm", "transformers", "ultralytics")

# Token ids are drawn below this; every text config's vocab_size.
VOCAB = 1000
# The attention mask's padded tail: the mask must change the outputs.
PADDING = 4

# Text models: 2 layers, hidden 64, 2 heads, 16 tokens.
_TEXT = ("tokens", (1, 16))
_BERT = {"vocab_size": VOCAB, "hidden_size": 64, "num_hidden_layers": 2,
         "num_attention_heads": 2, "intermediate_size": 128, "max_position_embeddings": 64}

HUB_MODELS = {
    # timm: ViT- and DeiT-style, hybrid conv-attention, windowed attention.
    "timm_vit_tiny_patch16": ("vision_transformer", "timm",
                              {"model": "vit_tiny_patch16_224", "img_size": 64, "depth": 4},
                              ("image", (1, 3, 64, 64))),
    "timm_deit_tiny_patch16": ("vision_transformer", "timm",
                               {"model": "deit_tiny_distilled_patch16_224", "img_size": 64,
                                "depth": 4}, ("image", (1, 3, 64, 64))),
    "timm_mobilevit_xxs": ("hybrid_attention", "timm", {"model": "mobilevit_xxs"},
                           ("image", (1, 3, 64, 64))),
    "timm_edgenext_xx_small": ("hybrid_attention", "timm", {"model": "edgenext_xx_small"},
                               ("image", (1, 3, 64, 64))),
    "timm_maxvit_pico_rw": ("hybrid_attention", "timm",
                            {"model": "maxvit_rmlp_pico_rw_256", "img_size": 64},
                            ("image", (1, 3, 64, 64))),
    "timm_swin_tiny_window4": ("windowed_attention", "timm",
                               {"model": "swin_tiny_patch4_window7_224", "img_size": 64,
                                "window_size": 4, "depths": (1, 1, 2, 1)},
                               ("image", (1, 3, 64, 64))),
    "timm_levit_128s": ("hybrid_attention", "timm", {"model": "levit_128s", "img_size": 64},
                        ("image", (1, 3, 64, 64))),
    "timm_efficientformer_l1": ("hybrid_attention", "timm",
                                {"model": "efficientformer_l1"},
                                ("image", (1, 3, 224, 224))),
    # transformers: encoders and a decoder with attention masks.
    "hf_bert": ("text", "transformers",
                {"model": "BertModel", "config": "BertConfig", "kwargs": _BERT,
                 "outputs": ["last_hidden_state", "pooler_output"]}, _TEXT),
    "hf_distilbert": ("text", "transformers",
                      {"model": "DistilBertModel", "config": "DistilBertConfig",
                       "kwargs": {"vocab_size": VOCAB, "dim": 64, "n_layers": 2, "n_heads": 2,
                                  "hidden_dim": 128, "max_position_embeddings": 64},
                       "outputs": ["last_hidden_state"]}, _TEXT),
    "hf_roberta": ("text", "transformers",
                   {"model": "RobertaModel", "config": "RobertaConfig",
                    "kwargs": {**_BERT, "max_position_embeddings": 66},
                    "outputs": ["last_hidden_state", "pooler_output"]}, _TEXT),
    "hf_mobilebert": ("text", "transformers",
                      {"model": "MobileBertModel", "config": "MobileBertConfig",
                       "kwargs": {**_BERT, "embedding_size": 32, "intra_bottleneck_size": 32,
                                  "true_hidden_size": 32, "num_feedforward_networks": 2},
                       "outputs": ["last_hidden_state", "pooler_output"]}, _TEXT),
    "hf_gpt2": ("text", "transformers",
                {"model": "GPT2LMHeadModel", "config": "GPT2Config",
                 "kwargs": {"vocab_size": VOCAB, "n_embd": 64, "n_layer": 2, "n_head": 2,
                            "n_positions": 64, "use_cache": False, "bos_token_id": 0,
                            "eos_token_id": 0},
                 "outputs": ["logits"]}, _TEXT),
    # transformers: vision, speech, detection, segmentation.
    "hf_vit": ("vision_transformer", "transformers",
               {"model": "ViTModel", "config": "ViTConfig",
                "kwargs": {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2,
                           "intermediate_size": 128, "image_size": 64, "patch_size": 16},
                "outputs": ["last_hidden_state", "pooler_output"]}, ("image", (1, 3, 64, 64))),
    "hf_clip_vision": ("vision_transformer", "transformers",
                       {"model": "CLIPVisionModel", "config": "CLIPVisionConfig",
                        "kwargs": {"hidden_size": 64, "num_hidden_layers": 2,
                                   "num_attention_heads": 2, "intermediate_size": 128,
                                   "image_size": 64, "patch_size": 16},
                        "outputs": ["last_hidden_state", "pooler_output"]},
                       ("image", (1, 3, 64, 64))),
    "hf_whisper_encoder": ("speech", "transformers",
                           {"model": "WhisperModel", "config": "WhisperConfig",
                            "submodule": "encoder",
                            "kwargs": {"vocab_size": VOCAB, "d_model": 64, "encoder_layers": 2,
                                       "decoder_layers": 1, "encoder_attention_heads": 2,
                                       "decoder_attention_heads": 2, "encoder_ffn_dim": 128,
                                       "decoder_ffn_dim": 128, "num_mel_bins": 80,
                                       "max_source_positions": 32, "max_target_positions": 32,
                                       "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2,
                                       "decoder_start_token_id": 1},
                            "outputs": ["last_hidden_state"]}, ("image", (1, 80, 64))),
    "hf_detr": ("detection", "transformers",
                {"model": "DetrForObjectDetection", "config": "DetrConfig",
                 "kwargs": {"use_timm_backbone": False, "use_pretrained_backbone": False,
                            "backbone_config": {"model_type": "resnet", "embedding_size": 16,
                                                "hidden_sizes": [16, 32, 64, 128],
                                                "depths": [1, 1, 1, 1], "layer_type": "basic",
                                                "out_features": ["stage4"]},
                            "d_model": 64, "encoder_layers": 1, "decoder_layers": 1,
                            "encoder_attention_heads": 2, "decoder_attention_heads": 2,
                            "encoder_ffn_dim": 128, "decoder_ffn_dim": 128, "num_queries": 10,
                            "num_labels": 5},
                 "outputs": ["logits", "pred_boxes"]}, ("image", (1, 3, 128, 128))),
    "hf_segformer": ("segmentation", "transformers",
                     {"model": "SegformerForSemanticSegmentation", "config": "SegformerConfig",
                      "kwargs": {"num_encoder_blocks": 4, "depths": [1, 1, 1, 1],
                                 "hidden_sizes": [16, 32, 64, 128],
                                 "num_attention_heads": [1, 1, 2, 2],
                                 "decoder_hidden_size": 64, "num_labels": 4},
                      "outputs": ["logits"]}, ("image", (1, 3, 64, 64))),
    # ultralytics: YOLO detect and pose, and YOLO11 (C2PSA attention).
    "yolov8n": ("detection", "ultralytics", {"model": "DetectionModel", "yaml": "yolov8n.yaml"},
                ("image", (1, 3, 128, 128))),
    "yolov8n_pose": ("pose", "ultralytics", {"model": "PoseModel", "yaml": "yolov8n-pose.yaml"},
                     ("image", (1, 3, 128, 128))),
    "yolo11n": ("detection", "ultralytics", {"model": "DetectionModel", "yaml": "yolo11n.yaml"},
                ("image", (1, 3, 128, 128))),
    "yolo11n_seg": ("segmentation", "ultralytics",
                    {"model": "SegmentationModel", "yaml": "yolo11n-seg.yaml"},
                    ("image", (1, 3, 128, 128))),
}

# Why the torch 1.13 leg has no hub model: the three libraries are
# installed only beside torch 2.14 (scripts/requirements-zoo.txt), and
# transformers 5 asks for torch >= 2.6 in its metadata.
NOT_ON_TORCH = {"1.13": "timm, transformers and ultralytics are installed beside torch 2.14 only "
                        "(scripts/requirements-zoo.txt; transformers 5 needs torch >= 2.6)"}


def input_names(kind):
    return {"tokens": ["input_ids", "attention_mask"]}.get(kind, ["input"])


def tokens(shape, seed):
    """(ids, mask) for the "tokens" input: seeded ids below VOCAB, the
    mask 1 but for the last PADDING positions of each row."""
    import torch

    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, VOCAB, shape, generator=g, dtype=torch.int64)
    mask = torch.ones(shape, dtype=torch.int64)
    mask[:, shape[1] - PADDING:] = 0
    return ids, mask


def build(name):
    """The hub model name, seeded and in eval mode (before prepare())."""
    import torch

    family, source, spec, _ = HUB_MODELS[name]
    torch.manual_seed(0)
    if source == "timm":
        import timm

        kw = {k: v for k, v in spec.items() if k != "model"}
        return timm.create_model(spec["model"], pretrained=False, **kw).eval()
    if source == "transformers":
        os.environ["HF_HUB_OFFLINE"] = "1"
        import transformers

        config = getattr(transformers, spec["config"])(**spec["kwargs"])
        model = getattr(transformers, spec["model"])(config)
        if spec.get("submodule"):
            model = getattr(model, spec["submodule"])
        return _fields_class()(model.eval(), spec["outputs"]).eval()
    os.environ.setdefault("YOLO_OFFLINE", "True")
    from ultralytics.nn import tasks

    model = getattr(tasks, spec["model"])(spec["yaml"], verbose=False).eval()
    head = model.model[-1]
    head.export, head.format = True, "onnx"
    return model


def finish(name, model):
    """The model as exported, once prepared: ultralytics' fused (Conv and
    BatchNorm folded, as its exporter does); any other as it is."""
    if HUB_MODELS[name][1] == "ultralytics":
        return model.fuse(verbose=False).eval()
    return model


def _fields_class():
    import torch

    class Fields(torch.nn.Module):
        """A transformers model called with its inputs by keyword, returning
        the named fields of its output, in order."""

        def __init__(self, model, fields):
            super().__init__()
            self.model = model
            self.fields = list(fields)
            self.keys = ("input_ids", "attention_mask") if _is_text(model) else None

        def forward(self, *args):
            if self.keys:
                out = self.model(**dict(zip(self.keys, args)))
            elif type(self.model).__name__ == "WhisperEncoder":
                out = self.model(input_features=args[0])
            else:
                out = self.model(pixel_values=args[0])
            return tuple(getattr(out, f) for f in self.fields)

    return Fields


def _is_text(model):
    return hasattr(model.config, "vocab_size") and not hasattr(model.config, "num_mel_bins")
