"""Rerank images by how well they match a prompt, with the model's CLIP, through the Python binding.

    PYTHONPATH=bindings/python python3 examples/python/rerank.py MODEL.safetensors "a prompt"

The model needs a clip and a tokenizer component (tools/convert_clip.py). The images here are
synthetic, of different sizes: CLIP's preprocessing resizes and crops each one.
"""
import sys

import numpy as np

import dalle


def synthetic_images():
    y, x = np.mgrid[0:200, 0:300]
    stripes = np.where((x // 20) % 2 == 0, 1, 0)[..., None] * np.array([220, 30, 30]) + 20
    ramp = np.stack([x * 255 // 299, y * 255 // 199, np.full_like(x, 128)], axis=-1)
    yy, xx = np.mgrid[0:120, 0:90]
    disc = np.where(((xx - 45) ** 2 + (yy - 60) ** 2 < 900)[..., None], [250, 250, 40], [10, 10, 80])
    return [a.astype(np.uint8) for a in (stripes, ramp, disc)]


def main(path, prompt):
    with dalle.Model(path) as model, dalle.Context(model, threads=0) as ctx:
        images = synthetic_images()
        scores, order = ctx.rerank(prompt, images)
        for i in order:
            h, w, _ = images[i].shape
            print(f"{scores[i]:.4f} image {i} ({w}x{h})")

        text = ctx.clip_encode_text(prompt)
        embeddings = ctx.clip_encode_images(images)
        cos = embeddings @ text / (np.linalg.norm(embeddings, axis=1) * np.linalg.norm(text))
        print("embedding size", text.shape[0], "- cosines", np.round(cos, 4).tolist())
        assert list(np.argsort(-cos, kind="stable")) == order

        for bad in ("", None):
            try:
                ctx.rerank(bad, images)
                raise SystemExit(f"prompt {bad!r} was accepted")
            except dalle.InvalidArgumentError as e:
                print("rejected:", e)
        try:
            ctx.rerank(prompt, [])
            raise SystemExit("zero images were accepted")
        except dalle.InvalidArgumentError as e:
            print("rejected:", e)
    print("ok")


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit('usage: rerank.py MODEL.safetensors "a prompt"')
    main(sys.argv[1], sys.argv[2])
