#!/usr/bin/env python3
"""Convert an OpenAI CLIP checkpoint (ViT) into a libdalle bundle.

    python3 tools/convert_clip.py CHECKPOINT OUT.safetensors [--dtype f32|f16]
        [--vision-heads N] [--text-heads N] [--no-tokenizer]

CHECKPOINT is one of
  - OpenAI's TorchScript archive (what clip.load downloads, e.g. ViT-B-32.pt) or a pickled
    OpenAI state dict (torch.save(model.state_dict())),
  - a safetensors file in OpenAI's layout ("visual.conv1.weight", ...), or in the layout of
    Hugging Face's `openai/clip-vit-base-patch32` ("vision_model.embeddings.patch_embedding.weight",
    ...; renamed by the rules in tools/clip_reference.py, q/k/v concatenated into in_proj).

The configuration is inferred as clip.model.build_model does (heads = width / 64 unless
given), the tensors are loaded into the reference model to check names and shapes, and the
output holds tensors "clip.<OpenAI name>" plus the CLIP BPE tokenizer section (from the
`openai-clip` package's bpe_simple_vocab_16e6.txt.gz), with string metadata
    format=libdalle, format_version=1, components=clip,tokenizer, clip.kind=vit, clip.embed_dim,
    clip.image_resolution, clip.vision_patch_size, clip.vision_width, clip.vision_layers,
    clip.vision_heads, clip.context_length, clip.vocab_size, clip.transformer_width,
    clip.transformer_layers, clip.transformer_heads, tokenizer.kind=clip-bpe, tokenizer.vocab_size.

Requirements: torch (CPU), openai-clip (--no-deps) with ftfy regex tqdm packaging, safetensors, numpy.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import clip_reference as ref  # noqa: E402
from bundle_tokenizer import tokenizer_tensors_and_metadata  # noqa: E402

NOT_PARAMETERS = {"input_resolution", "context_length", "vocab_size"}


def load_checkpoint(path):
    """An OpenAI-layout state dict of float32 numpy arrays."""
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file
        sd = load_file(path)
    else:
        import torch
        try:
            sd = torch.jit.load(path, map_location="cpu").state_dict()
        except RuntimeError:
            sd = torch.load(path, map_location="cpu", weights_only=False)
            if isinstance(sd, torch.nn.Module):
                sd = sd.state_dict()
            elif isinstance(sd, dict) and "state_dict" in sd:
                sd = sd["state_dict"]
        sd = {k: v.detach().float().numpy() for k, v in sd.items()}
    if any(k.startswith(("text_model.", "vision_model.")) for k in sd):
        sd = ref.hf_to_openai(sd)
    return {k: np.asarray(v, dtype=np.float32) for k, v in sd.items() if k not in NOT_PARAMETERS}


def bundle(sd, vision_heads=None, text_heads=None, dtype="f32", with_tokenizer=True):
    """(tensors, metadata) of the libdalle bundle for an OpenAI-layout state dict."""
    config = ref.config_from_state_dict(sd)
    if vision_heads:
        config["vision_heads"] = vision_heads
    if text_heads:
        config["transformer_heads"] = text_heads
    if config["vision_heads"] < 1 or config["transformer_heads"] < 1:
        raise SystemExit("widths below 64: give --vision-heads and --text-heads")
    ref.reference_model(config, sd)  # strict: every name and shape must match the reference
    np_dtype = np.float16 if dtype == "f16" else np.float32
    tensors = {"clip." + k: np.array(v, dtype=np_dtype, order="C") for k, v in sd.items()}
    metadata = {"format": "libdalle", "format_version": "1", "components": "clip", "clip.kind": "vit"}
    metadata.update({"clip." + k: str(v) for k, v in config.items()})
    if with_tokenizer:
        merges, m = tokenizer_tensors_and_metadata()
        tensors["tokenizer.merges"] = merges
        metadata.update(m)
        metadata["components"] = "clip,tokenizer"
    return tensors, metadata


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint")
    parser.add_argument("out")
    parser.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    parser.add_argument("--vision-heads", type=int)
    parser.add_argument("--text-heads", type=int)
    parser.add_argument("--no-tokenizer", action="store_true")
    args = parser.parse_args()
    from safetensors.numpy import save_file
    tensors, metadata = bundle(load_checkpoint(args.checkpoint), args.vision_heads, args.text_heads,
                               args.dtype, not args.no_tokenizer)
    save_file(tensors, args.out, metadata=metadata)
    print(f"wrote {args.out}: {len(tensors)} tensors, components={metadata['components']}")


if __name__ == "__main__":
    main()
