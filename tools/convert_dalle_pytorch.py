#!/usr/bin/env python3
"""Convert a DALLE-pytorch (1.6.6) checkpoint into a libdalle bundle.

    python3 tools/convert_dalle_pytorch.py CHECKPOINT.pt OUT.safetensors [--dtype f32|f16] [--no-tokenizer]

CHECKPOINT.pt is what DALLE-pytorch's train_dalle.py saves: a dict with 'hparams' (DALLE's
keyword arguments without `vae`), 'vae_params' (DiscreteVAE's keyword arguments, or None for
a pretrained VAE) and 'weights' (DALLE's state_dict, VAE included).

The bundle holds, in one safetensors file:
  - transformer: tensors "transformer.<state_dict key>" for every non-"vae." key, metadata
    transformer.* (dim, depth, heads, dim_head, text_seq_len, num_text_tokens, num_image_tokens,
    image_fmap_size, attn_types, rotary_emb, shift_tokens, sandwich_norm, stable,
    shared_attn_ids, shared_ff_ids, and reversible / sparse_attn / share_input_output_emb, which
    libdalle rejects when true);
  - dvae (DALLE-pytorch's DiscreteVAE): tensors "dvae.<vae key>", metadata dvae.kind=dalle-pytorch,
    dvae.image_size, dvae.num_layers, dvae.num_tokens, dvae.codebook_dim, dvae.hidden_dim,
    dvae.num_resnet_blocks, dvae.channels, dvae.normalization_mean, dvae.normalization_std;
  - tokenizer: DALLE-pytorch's default tokenizer, CLIP's BPE (tokenizer.kind=clip-bpe,
    tokenizer.vocab_size, tensor tokenizer.merges).
A checkpoint with a pretrained VAE (OpenAI's dVAE, VQGAN) gets no dvae component; add the
OpenAI dVAE with tools/convert_openai_dvae.py.

With --dtype f16 the weights are stored as float16, except the rotary position table
(transformer.transformer.pos_emb), which stays float32.

Requirements: torch (CPU), dalle-pytorch (--no-deps) with einops, axial-positional-embedding,
rotary-embedding-torch; safetensors; the stubs in tools/stubs.
"""
import argparse
import gzip
import inspect
import os
import sys

import torch
from safetensors.torch import save_file

TOOLS = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(TOOLS, "stubs"))
sys.path.insert(0, TOOLS)

from dalle_pytorch import DALLE, DiscreteVAE  # noqa: E402

KEEP_F32 = {"transformer.transformer.pos_emb"}


def defaults(fn):
    return {k: p.default for k, p in inspect.signature(fn).parameters.items()
            if p.default is not inspect.Parameter.empty}


def listing(values):
    return ",".join(str(v) for v in values)


def transformer_metadata(hparams, num_image_tokens, image_fmap_size):
    h = {**defaults(DALLE.__init__), **hparams}
    for key in ("dim", "depth"):
        if key not in hparams:
            sys.exit(f"checkpoint hparams lack '{key}'")
    depth = h["depth"]
    attn_types = h["attn_types"] or ("full",)
    if isinstance(attn_types, str):
        attn_types = (attn_types,)
    sparse = h["sparse_attn"]
    sparse = any(sparse) if isinstance(sparse, (tuple, list)) else bool(sparse)

    def flag(v):
        return "true" if v else "false"

    return {
        "transformer.kind": "dalle-pytorch",
        "transformer.dim": str(h["dim"]),
        "transformer.depth": str(depth),
        "transformer.heads": str(h["heads"]),
        "transformer.dim_head": str(h["dim_head"]),
        "transformer.text_seq_len": str(h["text_seq_len"]),
        "transformer.num_text_tokens": str(h["num_text_tokens"]),
        "transformer.num_image_tokens": str(num_image_tokens),
        "transformer.image_fmap_size": str(image_fmap_size),
        "transformer.attn_types": listing(attn_types),
        "transformer.rotary_emb": flag(h["rotary_emb"]),
        "transformer.shift_tokens": flag(h["shift_tokens"]),
        "transformer.sandwich_norm": flag(h["sandwich_norm"]),
        "transformer.stable": flag(h["stable"]),
        "transformer.shared_attn_ids": listing(h["shared_attn_ids"] or range(depth)),
        "transformer.shared_ff_ids": listing(h["shared_ff_ids"] or range(depth)),
        "transformer.reversible": flag(h["reversible"]),
        "transformer.sparse_attn": flag(sparse),
        "transformer.share_input_output_emb": flag(h["share_input_output_emb"]),
    }


def dvae_metadata(vae_params):
    v = {**defaults(DiscreteVAE.__init__), **vae_params}
    channels = v["channels"]
    means, stds = (t[:channels] for t in v["normalization"])
    return {
        "dvae.kind": "dalle-pytorch",
        "dvae.image_size": str(v["image_size"]),
        "dvae.num_layers": str(v["num_layers"]),
        "dvae.num_tokens": str(v["num_tokens"]),
        "dvae.codebook_dim": str(v["codebook_dim"]),
        "dvae.hidden_dim": str(v["hidden_dim"]),
        "dvae.num_resnet_blocks": str(v["num_resnet_blocks"]),
        "dvae.channels": str(channels),
        "dvae.normalization_mean": listing(repr(float(x)) for x in means),
        "dvae.normalization_std": listing(repr(float(x)) for x in stds),
    }


def clip_merges_text():
    """CLIP's BPE merges, one 'a b' per line in rank order (as clip's SimpleTokenizer reads them)."""
    import importlib.util
    spec = importlib.util.find_spec("clip")  # located, not imported (clip needs torchvision)
    if spec is None or spec.origin is None:
        sys.exit("the tokenizer section needs the openai-clip package (pip install --no-deps openai-clip)")
    path = os.path.join(os.path.dirname(spec.origin), "bpe_simple_vocab_16e6.txt.gz")
    lines = gzip.open(path).read().decode("utf-8").split("\n")
    return "\n".join(lines[1:49152 - 256 - 2 + 1])


def tokenizer_section():
    """(tensors, metadata) of the tokenizer component; bundle_tokenizer.py's when present."""
    try:
        from bundle_tokenizer import tokenizer_tensors_and_metadata
        blob, metadata = tokenizer_tensors_and_metadata()
        return {"tokenizer.merges": torch.from_numpy(blob)}, metadata
    except ImportError:
        merges = clip_merges_text().encode("utf-8")
        tensors = {"tokenizer.merges": torch.frombuffer(bytearray(merges), dtype=torch.uint8).clone()}
        return tensors, {"tokenizer.kind": "clip-bpe", "tokenizer.vocab_size": "49408"}


def convert(checkpoint, dtype="f32", with_tokenizer=True):
    """(tensors, metadata) of the bundle for a loaded train_dalle.py checkpoint dict."""
    for key in ("hparams", "weights"):
        if key not in checkpoint:
            sys.exit(f"not a DALLE-pytorch checkpoint: no '{key}' entry (found {sorted(checkpoint)})")
    hparams, vae_params, weights = checkpoint["hparams"], checkpoint.get("vae_params"), checkpoint["weights"]
    if not isinstance(weights, dict):
        sys.exit("checkpoint 'weights' is not a state_dict (a DeepSpeed checkpoint must be consolidated first)")
    hparams = {k: v for k, v in hparams.items() if k != "vae"}
    components = ["transformer"]
    metadata = {"format": "libdalle", "format_version": "1"}
    tensors = {}

    # Build the model the checkpoint describes, so names and shapes are checked by load_state_dict.
    if vae_params is not None:
        vae = DiscreteVAE(**vae_params)
        metadata.update(dvae_metadata(vae_params))
        components.insert(0, "dvae")
    else:
        num_tokens = weights["image_emb.weight"].shape[0] if "image_emb.weight" in weights else None
        print(f"note: the checkpoint uses a pretrained VAE ({checkpoint.get('vae_class_name', 'unknown')}, "
              f"{num_tokens} tokens); the bundle gets no dvae component", file=sys.stderr)
        vae = None
    if vae is not None:
        dalle = DALLE(vae=vae, **hparams)
        dalle.load_state_dict(weights, strict=True)  # raises on a missing, unexpected or mis-shaped tensor
        fmap = vae.image_size // (2 ** vae.num_layers)
        num_image_tokens = vae.num_tokens
    else:
        emb = weights["image_emb.weight"]
        num_image_tokens = emb.shape[0]
        fmap = None
        if "transformer.pos_emb" in weights:
            text_len = hparams.get("text_seq_len", 256) + 1
            fmap = int(round((weights["transformer.pos_emb"].shape[1] - text_len) ** 0.5))
        elif "image_pos_emb.weights.0" in weights:
            fmap = weights["image_pos_emb.weights.0"].shape[1]
        if fmap is None:
            sys.exit("cannot infer the image token grid size of this checkpoint")
    metadata.update(transformer_metadata(hparams, num_image_tokens, fmap))

    for key, value in weights.items():
        value = value.detach().to(torch.float32).contiguous()
        name = ("dvae." + key[len("vae."):]) if key.startswith("vae.") else ("transformer." + key)
        if name.startswith("dvae.") and vae is None:
            continue
        if dtype == "f16" and name not in KEEP_F32:
            value = value.to(torch.float16)
        tensors[name] = value
    if with_tokenizer:
        tok_tensors, tok_metadata = tokenizer_section()
        tensors.update(tok_tensors)
        metadata.update(tok_metadata)
        components.insert(1 if "dvae" in components else 0, "tokenizer")
    metadata["components"] = ",".join(components)
    return tensors, metadata


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("output")
    parser.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    parser.add_argument("--no-tokenizer", action="store_true", help="leave the tokenizer component out")
    args = parser.parse_args()
    checkpoint = torch.load(args.checkpoint, map_location="cpu", weights_only=False)
    tensors, metadata = convert(checkpoint, args.dtype, not args.no_tokenizer)
    save_file(tensors, args.output, metadata=metadata)
    print(f"wrote {args.output}: {len(tensors)} tensors, components {metadata['components']}")


if __name__ == "__main__":
    main()
