"""Shared pieces of libdalle's CLIP tools: the `openai-clip` import (with the stub
torchvision), its preprocessing written with PIL, the HF → OpenAI name mapping, and the
seeded weights that Swift's `CLIPSeededWeights` reproduces bit for bit."""
import math
import os
import re
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "stubs"))

import clip  # noqa: E402  (needs the stub torchvision above)
from clip.model import CLIP  # noqa: E402,F401
import clip.model  # noqa: E402
import torch.nn  # noqa: E402

# clip's LayerNorm casts to float32 (for its fp16 weights); plain LayerNorm lets the
# golden references run in float64. Identical for float32 models.
clip.model.LayerNorm.forward = torch.nn.LayerNorm.forward

MEAN = (0.48145466, 0.4578275, 0.40821073)
STD = (0.26862954, 0.26130258, 0.27577711)


def resize_and_crop(img, n_px):
    """clip's Resize(n_px, BICUBIC) + CenterCrop(n_px) + convert("RGB"), as torchvision does them with PIL."""
    from PIL import Image
    w, h = img.size
    short, long = (w, h) if w <= h else (h, w)
    new_short, new_long = n_px, int(n_px * long / short)
    size = (new_short, new_long) if w <= h else (new_long, new_short)
    if size != (w, h):
        img = img.resize(size, Image.BICUBIC)
    w, h = img.size
    top, left = int(round((h - n_px) / 2.0)), int(round((w - n_px) / 2.0))
    return img.crop((left, top, left + n_px, top + n_px)).convert("RGB")


def preprocess(img, n_px):
    """clip's _transform: a float32 array [3, n_px, n_px]."""
    x = np.asarray(resize_and_crop(img, n_px), dtype=np.float32).transpose(2, 0, 1) / np.float32(255)
    mean = np.array(MEAN, dtype=np.float32)[:, None, None]
    std = np.array(STD, dtype=np.float32)[:, None, None]
    return (x - mean) / std


# Hugging Face CLIPModel names → OpenAI state-dict names, as data: (pattern, replacement)
# regexes applied in order; "{qkv}" rules mark q/k/v projections that are concatenated
# (q, k, v along dim 0) into one in_proj tensor; TRANSPOSED are [out, in] Linear weights
# that OpenAI stores as [in, out] parameters. Sources/DalleCore/Models/CLIP/CLIPCheckpoint.swift holds the same rules.
HF_RENAMES = [
    (r"^text_model\.embeddings\.token_embedding\.weight$", "token_embedding.weight"),
    (r"^text_model\.embeddings\.position_embedding\.weight$", "positional_embedding"),
    (r"^text_model\.final_layer_norm\.", "ln_final."),
    (r"^text_model\.encoder\.layers\.", "transformer.resblocks."),
    (r"^text_projection\.weight$", "text_projection"),
    (r"^vision_model\.embeddings\.class_embedding$", "visual.class_embedding"),
    (r"^vision_model\.embeddings\.patch_embedding\.weight$", "visual.conv1.weight"),
    (r"^vision_model\.embeddings\.position_embedding\.weight$", "visual.positional_embedding"),
    (r"^vision_model\.pre_layrnorm\.", "visual.ln_pre."),
    (r"^vision_model\.post_layernorm\.", "visual.ln_post."),
    (r"^vision_model\.encoder\.layers\.", "visual.transformer.resblocks."),
    (r"^visual_projection\.weight$", "visual.proj"),
    (r"\.self_attn\.out_proj\.", ".attn.out_proj."),
    (r"\.self_attn\.([qkv])_proj\.(weight|bias)$", r".attn.in_proj_\2.{\1}"),
    (r"\.layer_norm1\.", ".ln_1."),
    (r"\.layer_norm2\.", ".ln_2."),
    (r"\.mlp\.fc1\.", ".mlp.c_fc."),
    (r"\.mlp\.fc2\.", ".mlp.c_proj."),
]
TRANSPOSED = {"text_projection", "visual.proj"}
HF_IGNORED = re.compile(r"^(text_model|vision_model)\.embeddings\.position_ids$")


def hf_to_openai(hf):
    """An OpenAI-layout state dict (numpy arrays) from a Hugging Face CLIPModel one."""
    out, parts = {}, {}
    for name, value in hf.items():
        if HF_IGNORED.match(name):
            continue
        new = name
        for pattern, replacement in HF_RENAMES:
            new = re.sub(pattern, replacement, new)
        if new.endswith((".{q}", ".{k}", ".{v}")):
            parts.setdefault(new[:-4], {})[new[-2]] = value
        elif new in TRANSPOSED:
            out[new] = np.ascontiguousarray(value.T)
        else:
            out[new] = value
    for name, qkv in parts.items():
        if set(qkv) != {"q", "k", "v"}:
            raise ValueError(f"{name}: q/k/v projections incomplete ({sorted(qkv)})")
        out[name] = np.concatenate([qkv["q"], qkv["k"], qkv["v"]], axis=0)
    return out


def openai_to_hf(sd):
    """The inverse of hf_to_openai (for making test checkpoints)."""
    inverse = [
        ("token_embedding.weight", "text_model.embeddings.token_embedding.weight"),
        ("positional_embedding", "text_model.embeddings.position_embedding.weight"),
        ("text_projection", "text_projection.weight"),
        ("visual.class_embedding", "vision_model.embeddings.class_embedding"),
        ("visual.conv1.weight", "vision_model.embeddings.patch_embedding.weight"),
        ("visual.positional_embedding", "vision_model.embeddings.position_embedding.weight"),
        ("visual.proj", "visual_projection.weight"),
        ("logit_scale", "logit_scale"),
    ]
    out = {}
    for name, value in sd.items():
        hit = [h for o, h in inverse if o == name]
        if hit:
            out[hit[0]] = np.ascontiguousarray(value.T) if name in TRANSPOSED else value
            continue
        n = re.sub(r"^visual\.ln_pre\.", "vision_model.pre_layrnorm.", name)
        n = re.sub(r"^visual\.ln_post\.", "vision_model.post_layernorm.", n)
        n = re.sub(r"^ln_final\.", "text_model.final_layer_norm.", n)
        n = re.sub(r"^visual\.transformer\.resblocks\.", "vision_model.encoder.layers.", n)
        n = re.sub(r"^transformer\.resblocks\.", "text_model.encoder.layers.", n)
        n = n.replace(".attn.out_proj.", ".self_attn.out_proj.").replace(".ln_1.", ".layer_norm1.")
        n = n.replace(".ln_2.", ".layer_norm2.").replace(".mlp.c_fc.", ".mlp.fc1.").replace(".mlp.c_proj.", ".mlp.fc2.")
        m = re.match(r"^(.*)\.attn\.in_proj_(weight|bias)$", n)
        if m:
            for part, chunk in zip("qkv", np.split(value, 3, axis=0)):
                out[f"{m.group(1)}.self_attn.{part}_proj.{m.group(2)}"] = chunk
        else:
            out[n] = value
    return out


def config_from_state_dict(sd):
    """clip.model.build_model's inference of the ViT configuration, as the bundle's clip.* fields."""
    if "visual.proj" not in sd:
        raise ValueError("not a ViT CLIP (ModifiedResNet vision towers are not supported)")
    vision_width = sd["visual.conv1.weight"].shape[0]
    patch = sd["visual.conv1.weight"].shape[-1]
    grid = round((sd["visual.positional_embedding"].shape[0] - 1) ** 0.5)
    text_width = sd["ln_final.weight"].shape[0]
    return {
        "embed_dim": sd["text_projection"].shape[1],
        "image_resolution": patch * grid,
        "vision_patch_size": patch,
        "vision_width": vision_width,
        "vision_layers": len([k for k in sd if k.startswith("visual.") and k.endswith(".attn.in_proj_weight")]),
        "vision_heads": vision_width // 64,
        "context_length": sd["positional_embedding"].shape[0],
        "vocab_size": sd["token_embedding.weight"].shape[0],
        "transformer_width": text_width,
        "transformer_layers": len({k.split(".")[2] for k in sd if k.startswith("transformer.resblocks")}),
        "transformer_heads": text_width // 64,
    }


# ----- seeded weights (Sources/DalleCore/Models/CLIP/CLIPSeededWeights.swift) -----

def fnv1a64(text):
    h = 0xCBF29CE484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def parameter_shapes(c):
    """(name without "clip.", shape) of every parameter, in Swift's order."""
    def block(prefix, w):
        return [(f"{prefix}.attn.in_proj_weight", (3 * w, w)), (f"{prefix}.attn.in_proj_bias", (3 * w,)),
                (f"{prefix}.attn.out_proj.weight", (w, w)), (f"{prefix}.attn.out_proj.bias", (w,)),
                (f"{prefix}.ln_1.weight", (w,)), (f"{prefix}.ln_1.bias", (w,)),
                (f"{prefix}.mlp.c_fc.weight", (4 * w, w)), (f"{prefix}.mlp.c_fc.bias", (4 * w,)),
                (f"{prefix}.mlp.c_proj.weight", (w, 4 * w)), (f"{prefix}.mlp.c_proj.bias", (w,)),
                (f"{prefix}.ln_2.weight", (w,)), (f"{prefix}.ln_2.bias", (w,))]
    vw, tw, p = c["vision_width"], c["transformer_width"], c["vision_patch_size"]
    grid = c["image_resolution"] // p
    out = [("visual.conv1.weight", (vw, 3, p, p)), ("visual.class_embedding", (vw,)),
           ("visual.positional_embedding", (grid * grid + 1, vw)),
           ("visual.ln_pre.weight", (vw,)), ("visual.ln_pre.bias", (vw,))]
    for i in range(c["vision_layers"]):
        out += block(f"visual.transformer.resblocks.{i}", vw)
    out += [("visual.ln_post.weight", (vw,)), ("visual.ln_post.bias", (vw,)), ("visual.proj", (vw, c["embed_dim"])),
            ("token_embedding.weight", (c["vocab_size"], tw)), ("positional_embedding", (c["context_length"], tw))]
    for i in range(c["transformer_layers"]):
        out += block(f"transformer.resblocks.{i}", tw)
    out += [("ln_final.weight", (tw,)), ("ln_final.bias", (tw,)), ("text_projection", (tw, c["embed_dim"])),
            ("logit_scale", ())]
    return out


def seeded_tensor(name, shape, seed):
    """Swift's CLIPSeededWeights.draw(name: "clip." + name, ...), as float32."""
    full = "clip." + name
    if shape == ():
        return np.array(math.log(1 / 0.07), dtype=np.float32)
    last = full.split(".")[-1]
    if len(shape) == 1:
        is_norm = last == "weight" and full.split(".")[-2].startswith("ln_")
        offset, half = (1.0 if is_norm else 0.0), 0.1
    elif last in ("proj", "text_projection"):
        offset, half = 0.0, 1 / math.sqrt(shape[0])
    else:
        offset, half = 0.0, 1 / math.sqrt(int(np.prod(shape[1:])))
    count = int(np.prod(shape))
    state = np.uint64(seed ^ fnv1a64(full))
    with np.errstate(over="ignore"):
        z = state + np.arange(1, count + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    u = (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)
    v = np.float32(offset) + (u * np.float32(2) - np.float32(1)) * np.float32(half)
    return v.astype(np.float32).reshape(shape)


def seeded_state_dict(config, seed):
    return {name: seeded_tensor(name, shape, seed) for name, shape in parameter_shapes(config)}


def reference_model(config, state_dict, dtype=None):
    """openai-clip's CLIP for `config` (heads as configured) holding `state_dict` (float32, or `dtype`)."""
    import torch
    import clip.model as cm
    original = cm.VisionTransformer

    def vision(input_resolution, patch_size, width, layers, heads, output_dim):
        return original(input_resolution, patch_size, width, layers, config["vision_heads"], output_dim)

    cm.VisionTransformer = vision  # CLIP() would use width // 64 heads
    try:
        model = CLIP(config["embed_dim"], config["image_resolution"], config["vision_layers"],
                     config["vision_width"], config["vision_patch_size"], config["context_length"],
                     config["vocab_size"], config["transformer_width"], config["transformer_heads"],
                     config["transformer_layers"])
    finally:
        cm.VisionTransformer = original
    model.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state_dict.items()})
    model = model.eval()
    return model.to(dtype) if dtype is not None else model
