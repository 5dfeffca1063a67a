"""Writes a tiny four-component bundle that makes 64x64 images, for the `dalle eval` tests.

Composed from the golden test models, no training: the transformer and tokenizer of the golden
generate bundle (32 image tokens on an 8x8 grid, 1114 text tokens), OpenAI's golden dVAE run at
64x64 (its 8x downsampling gives the 8x8 grid) with its codebook cut to the first 32 tokens, and
the tiny golden CLIP with its token embedding cut to the tokenizer's 1114 ids. Random-quality
images, real shapes and code paths.

usage: python3 tests/make_eval_bundle.py OUT.safetensors
"""
import json
import os
import struct
import sys

import numpy as np

DTYPES = {"F16": np.float16, "F32": np.float32, "U8": np.uint8, "I32": np.int32, "I64": np.int64}
GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "DalleCoreTests", "Golden")


def read(path):
    with open(path, "rb") as f:
        size = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(size))
        data = f.read()
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        dtype = DTYPES[info["dtype"]]
        tensors[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(info["shape"])
    return metadata, tensors


def write(path, metadata, tensors):
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        array = tensors[name]
        dtype = next(k for k, v in DTYPES.items() if np.dtype(v) == array.dtype)
        blob = array.tobytes()
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    encoded = json.dumps(header, separators=(",", ":")).encode()
    encoded += b" " * (-len(encoded) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(encoded)) + encoded + b"".join(blobs))


def main(out):
    gen_meta, gen = read(os.path.join(GOLDEN, "generate", "model.safetensors"))
    dvae_meta, dvae = read(os.path.join(GOLDEN, "dvae", "model.safetensors"))
    clip_meta, clip = read(os.path.join(GOLDEN, "clip", "clip_tiny.safetensors"))
    image_tokens = int(gen_meta["transformer.num_image_tokens"])
    text_vocab = int(gen_meta["tokenizer.vocab_size"])

    metadata = {"format": "libdalle", "format_version": "1", "components": "clip,dvae,tokenizer,transformer"}
    metadata.update({k: v for k, v in gen_meta.items() if k.startswith(("transformer.", "tokenizer."))})
    metadata.update({k: v for k, v in dvae_meta.items() if k.startswith("dvae.")})
    metadata.update({k: v for k, v in clip_meta.items() if k.startswith("clip.")})
    metadata["dvae.image_size"] = "64"
    metadata["dvae.vocab_size"] = str(image_tokens)
    metadata["clip.vocab_size"] = str(text_vocab)

    tensors = {k: v for k, v in gen.items() if k.startswith(("transformer.", "tokenizer."))}
    tensors.update({k: v for k, v in dvae.items() if k.startswith("dvae.")})
    tensors["dvae.encoder.blocks.output.conv.w"] = dvae["dvae.encoder.blocks.output.conv.w"][:image_tokens]
    tensors["dvae.encoder.blocks.output.conv.b"] = dvae["dvae.encoder.blocks.output.conv.b"][:image_tokens]
    tensors["dvae.decoder.blocks.input.w"] = dvae["dvae.decoder.blocks.input.w"][:, :image_tokens]
    tensors.update({k: v for k, v in clip.items() if k.startswith("clip.")})
    tensors["clip.token_embedding.weight"] = clip["clip.token_embedding.weight"][:text_vocab]
    write(out, metadata, tensors)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().splitlines()[-1])
    main(sys.argv[1])
