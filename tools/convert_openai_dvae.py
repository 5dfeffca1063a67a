#!/usr/bin/env python3
"""Convert OpenAI's discrete VAE (the `dall_e` package) into a libdalle bundle.

    python3 tools/convert_openai_dvae.py encoder.pkl decoder.pkl dvae.safetensors [--dtype f32|f16] [--image-size 256]

Each input is either a whole pickled `dall_e.Encoder` / `dall_e.Decoder` (as OpenAI released
encoder.pkl and decoder.pkl) or a state_dict of one. The configuration is inferred from the
tensor shapes (and checked against the modules' attributes when there are modules), then the
names and shapes are checked against a reference model built with that configuration.

The output is one safetensors file: tensors "dvae.encoder.<name>" / "dvae.decoder.<name>"
under the reference's own state_dict names, and string metadata
    format=libdalle, format_version=1, components=dvae, dvae.kind=openai, dvae.image_size, dvae.group_count,
    dvae.n_hid, dvae.n_blk_per_group, dvae.input_channels, dvae.output_channels, dvae.vocab_size, dvae.n_init.

Requirements: tools/requirements.txt (torch CPU, dall-e installed with --no-deps, attrs, requests,
safetensors, numpy).
"""
import argparse
import re
import sys

import attr
import torch
from safetensors.torch import save_file

from dall_e.decoder import Decoder
from dall_e.encoder import Encoder


def load_state(path):
    """Returns (state_dict, module or None) for a pickled module or a pickled state_dict."""
    obj = torch.load(path, map_location="cpu", weights_only=False)
    if isinstance(obj, torch.nn.Module):
        return {k: v.detach() for k, v in obj.state_dict().items()}, obj
    if isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return {k: v.detach() for k, v in obj.items()}, None
    sys.exit(f"{path}: expected a dall_e module or a state_dict, got {type(obj).__name__}")


def count_groups_and_blocks(state, path):
    groups = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.group_(\d+)\.", k))}
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.group_1\.block_(\d+)\.", k))}
    if not groups or not blocks:
        sys.exit(f"{path}: no 'blocks.group_N.block_M' tensors; not a dall_e dVAE")
    return len(groups), len(blocks)


def shape(state, name, path):
    if name not in state:
        sys.exit(f"{path}: missing tensor '{name}'")
    return tuple(state[name].shape)


def infer_config(enc, dec, enc_path, dec_path, image_size):
    group_count, n_blk = count_groups_and_blocks(enc, enc_path)
    n_hid, input_channels, _, _ = shape(enc, "blocks.input.w", enc_path)
    vocab_size = shape(enc, "blocks.output.conv.w", enc_path)[0]
    n_init, dec_vocab, _, _ = shape(dec, "blocks.input.w", dec_path)
    out2, dec_hid, _, _ = shape(dec, "blocks.output.conv.w", dec_path)
    config = {
        "image_size": image_size,
        "group_count": group_count,
        "n_hid": n_hid,
        "n_blk_per_group": n_blk,
        "input_channels": input_channels,
        "output_channels": out2 // 2,
        "vocab_size": vocab_size,
        "n_init": n_init,
    }
    dec_groups, dec_blk = count_groups_and_blocks(dec, dec_path)
    if (dec_groups, dec_blk, dec_vocab, dec_hid) != (group_count, n_blk, vocab_size, n_hid) or out2 % 2:
        sys.exit("encoder and decoder do not belong together: (group_count, n_blk_per_group, vocab_size, n_hid) = "
                 f"{(group_count, n_blk, vocab_size, n_hid)} in the encoder, "
                 f"{(dec_groups, dec_blk, dec_vocab, dec_hid)} in the decoder; decoder output statistics {out2}")
    if image_size % (1 << (group_count - 1)):
        sys.exit(f"--image-size {image_size} is not divisible by 2^(group_count - 1)")
    return config


def check_against_reference(state, module, cls, kwargs, path):
    """Compares names and shapes with a reference model of the inferred configuration."""
    if module is not None:
        for key, value in kwargs.items():
            if getattr(module, key, value) != value:
                sys.exit(f"{path}: module attribute {key}={getattr(module, key)} disagrees with its tensors ({value})")
    validators = attr.validators.get_disabled()
    attr.validators.set_disabled(True)  # the reference rejects small test configurations
    try:
        reference = cls(device=torch.device("meta"), **kwargs)
    finally:
        attr.validators.set_disabled(validators)
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in state.items()}
    if expected != got:
        missing = sorted(set(expected) - set(got))
        extra = sorted(set(got) - set(expected))
        wrong = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        sys.exit(f"{path}: tensors do not match a dall_e {cls.__name__}: missing {missing[:5]}, "
                 f"unexpected {extra[:5]}, wrong shapes {[(k, got[k], expected[k]) for k in wrong[:5]]}")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("encoder")
    parser.add_argument("decoder")
    parser.add_argument("output")
    parser.add_argument("--dtype", choices=["f32", "f16"], default="f32")
    parser.add_argument("--image-size", type=int, default=256)
    args = parser.parse_args()

    enc, enc_module = load_state(args.encoder)
    dec, dec_module = load_state(args.decoder)
    config = infer_config(enc, dec, args.encoder, args.decoder, args.image_size)
    common = {"n_hid": config["n_hid"], "n_blk_per_group": config["n_blk_per_group"],
              "vocab_size": config["vocab_size"]}
    check_against_reference(enc, enc_module, Encoder,
                            {**common, "input_channels": config["input_channels"]}, args.encoder)
    check_against_reference(dec, dec_module, Decoder,
                            {**common, "output_channels": config["output_channels"], "n_init": config["n_init"]},
                            args.decoder)

    dtype = {"f32": torch.float32, "f16": torch.float16}[args.dtype]
    tensors = {}
    for prefix, state in (("dvae.encoder.", enc), ("dvae.decoder.", dec)):
        for name, value in state.items():
            tensors[prefix + name] = value.to(dtype).contiguous()
    metadata = {"format": "libdalle", "format_version": "1", "components": "dvae", "dvae.kind": "openai"}
    metadata.update({f"dvae.{k}": str(v) for k, v in config.items()})
    save_file(tensors, args.output, metadata=metadata)
    print(f"wrote {args.output}: {len(tensors)} tensors, {sum(t.numel() for t in tensors.values())} parameters, "
          f"{args.dtype}, config {config}")


if __name__ == "__main__":
    main()
