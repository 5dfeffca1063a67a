"""DALL-E 2 (unCLIP) through the Python binding: images of a prompt (the best kept by the bundle's
CLIP), variations of an image, and the frames between two prompts.

    python3 examples/python/unclip.py UNCLIP.safetensors "a red cat" IMAGE.png [NOISE.safetensors]

with the package installed (pip install ./bindings/python), or PYTHONPATH=bindings/python in the
checkout. UNCLIP is a bundle from tools/convert_unclip.py with an image encoder (--image-encoder);
NOISE, when given, is diffusers' recorded noise for one variation (dalle.h's DALLE_UNCLIP_NOISE).
"""
import sys

import dalle


def main(path, prompt, image_path, noise=None):
    quick = dict(prior_steps=5, decoder_steps=5, super_res_steps=3, seed=7)
    with dalle.Model(path) as model, dalle.Context(model) as ctx:
        print(model)
        best = ctx.generate(prompt, count=3, keep_best=2, **quick)
        print("prompt:", best.images.shape, "CLIP scores, best first:", " ".join(f"{s:.3f}" for s in best.scores))
        image = dalle.read_image(image_path)
        varied = ctx.generate("", count=1 if noise else 2, image=image, noise=noise, decoder_steps=5, super_res_steps=3, seed=7)
        print("variations:", varied.images.shape, "mean pixel", [round(float(i.mean()), 1) for i in varied.images])
        frames = ctx.generate(prompt, count=3, interpolate_to="two blue squares", prior_steps=3, decoder_steps=3,
                              super_res_steps=2, seed=7)
        print("interpolation:", frames.images.shape)
        try:
            ctx.generate("a prompt and an image", image=image)
        except dalle.InvalidArgumentError as e:
            print("rejected:", e)


if __name__ == "__main__":
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    main(*sys.argv[1:])
