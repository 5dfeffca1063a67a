#!/usr/bin/env python3
"""Carries a trained transformer over to a new dVAE, so that it is fine-tuned on the new tokens instead of
trained again from scratch. A new dVAE numbers its codes its own way; encoding the same training images with
both dVAEs says which old codes each new code stands for. Each new code's image embedding becomes the mean of
the old codes' embeddings it co-occurs with (weighted by how often), and its logit row the row of the old code
it co-occurs with most, the bias lowered by log P(new code | that old code) so that new codes sharing one old
code share its probability. Codes the new dVAE never uses get a bias of -20. Writes a transformer-only file in
the old one's dtype; bundle it with the new dVAE (`dalle bundle OUT NEW_DVAE MODEL`) and fine-tune it with
`dalle train --stage transformer --init OUT --dvae NEW_DVAE`. Needs the Python binding, numpy and safetensors.

    PYTHONPATH=bindings/python python3 tools/carry_transformer.py MODEL NEW_DVAE --out OUT [--old-dvae PATH]
"""
import argparse
import json

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

import dalle

IMAGE_EMBEDDING = "transformer.image_emb.weight"
LOGIT_WEIGHT = "transformer.to_logits.1.weight"
LOGIT_BIAS = "transformer.to_logits.1.bias"


def encode(path, images, threads):
    with dalle.Model(path) as model, dalle.Context(model, threads=threads, seed=0) as ctx:
        return ctx.encode(images).reshape(len(images), -1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="model file with the trained transformer (and its dVAE unless --old-dvae)")
    parser.add_argument("new_dvae", help="model file or checkpoint with the new dVAE")
    parser.add_argument("--out", required=True)
    parser.add_argument("--old-dvae", help="the dVAE the transformer was trained on (default: MODEL's)")
    parser.add_argument("--count", type=int, default=2000, help="training images to encode (default 2000)")
    parser.add_argument("--stream", type=int, default=4242, help="training-stream seed (default 4242)")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()

    images = np.stack([dalle.shapes_training_sample(args.stream, i)[1] for i in range(args.count)])
    old = encode(args.old_dvae or args.model, images, args.threads).ravel()
    new = encode(args.new_dvae, images, args.threads).ravel()

    with safe_open(args.model, "np") as f:
        metadata = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys() if name.startswith("transformer.")}
    codes = tensors[IMAGE_EMBEDDING].shape[0]
    text_rows = tensors[LOGIT_WEIGHT].shape[0] - codes
    if max(old.max(), new.max()) >= codes:
        parser.error(f"a dVAE has more codes than the transformer's {codes} image tokens")

    counts = np.zeros((codes, codes))  # [new code, old code]
    np.add.at(counts, (new, old), 1)
    used = counts.sum(1) > 0
    main_old = np.where(used, counts.argmax(1), np.arange(codes))
    agreement = counts.max(1).sum() / counts.sum()
    print(f"{used.sum()} new codes, {len(np.unique(old))} old codes in use; "
          f"{100 * agreement:.1f} % of cells have their new code's most frequent old code")

    dtype = tensors[IMAGE_EMBEDDING].dtype
    embedding = tensors[IMAGE_EMBEDDING].astype(np.float64)
    old_given_new = counts / np.maximum(counts.sum(1, keepdims=True), 1)
    carried = np.where(used[:, None], old_given_new @ embedding, embedding)

    weight = tensors[LOGIT_WEIGHT].astype(np.float64)
    bias = tensors[LOGIT_BIAS].astype(np.float64)
    share = counts[np.arange(codes), main_old] / np.maximum(counts.sum(0)[main_old], 1)
    weight[text_rows:] = weight[text_rows + main_old]
    bias[text_rows:] = np.where(used, bias[text_rows + main_old] + np.log(np.maximum(share, 1e-4)), -20)

    tensors[IMAGE_EMBEDDING] = carried.astype(dtype)
    tensors[LOGIT_WEIGHT] = weight.astype(dtype)
    tensors[LOGIT_BIAS] = bias.astype(dtype)
    kept = {key: value for key, value in metadata.items()
            if key.startswith("transformer.") or key in ("format", "format_version")}
    kept["components"] = "transformer"
    kept["carried_from"] = json.dumps({"model": args.model, "new_dvae": args.new_dvae, "images": args.count})
    save_file(tensors, args.out, metadata=kept)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
