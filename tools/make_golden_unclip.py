#!/usr/bin/env python3
"""Golden vectors for libdalle's unCLIP (DALL·E 2 / Karlo), from diffusers' `UnCLIPPipeline`.

Rerun from the repository root (needs torch==2.13.0+cpu, numpy, safetensors, diffusers and
transformers: `bash tools/setup.sh`; no network, CPU only, a few seconds):

    python3 tools/make_golden_unclip.py [--pipeline-dir DIR] [--out DIR]

Do not put tools/stubs on sys.path for this script: its `transformers` stub would shadow the real one.

It builds a TINY unCLIP pipeline with Karlo's structure and random weights: a CLIP BPE tokenizer
written here (byte symbols, a few merges, 16 tokens of context), CLIPTextModelWithProjection (width
32, 2 layers, 4 heads, MLP 128, quick_gelu, projection 32), PriorTransformer (2 layers, 2 heads x 16, 16 + 4
tokens), UnCLIPTextProjModel (4 extra context tokens, time embedding 64, cross-attention 48), the
decoder UNet2DConditionModel (Karlo's block types, channels 16/32 in 4 norm groups, 8x8, 3 in / 6 out,
class_embed_type="identity", resnet_time_scale_shift="scale_shift", head dim 8), two super-res
UNet2DModels (ResNet blocks only, no mid attention, channels 8/16 in 4 norm groups, 32x32, 6 in / 3
out: x4 as Karlo's 64 -> 256) and the
three UnCLIPScheduler configurations Karlo uses (as diffusers' scripts/convert_kakao_brain_unclip_to_diffusers.py
builds them: prior fixed_small_log / sample / clip range 5; decoder learned_range / epsilon / clip 1;
super-res fixed_small_log / epsilon / clip 1). Every parameter is perturbed with seeded noise after
construction, then rounded to a float16-representable value (so a 16-bit bundle holds the exact
weights). The pipeline is written with `save_pretrained` to --pipeline-dir (default: a temporary
folder, removed at the end), its tokenizer/ rewritten as Karlo publishes it (vocab.json + merges.txt,
not transformers 5's tokenizer.json): that folder is the input format tools/convert_unclip.py reads.
The converted pipeline (401 k parameters) is committed as a 16-bit bundle, exact since every weight is
float16-representable, so Swift tests can load the whole tiny pipeline without torch.

Stochastic steps are made reproducible by replacing `diffusers.schedulers.scheduling_unclip.randn_tensor`
with a tape of pre-drawn tensors, which the fixtures record.

Fixtures (float32 safetensors; integers and booleans stored as floats) in
Tests/DalleCoreTests/Golden/unclip/:

  schedulers.safetensors
    betas, alphas_cumprod          [1000]   the squaredcos_cap_v2 table
    timesteps_N                    [N]      set_timesteps(N) for N in 2, 3, 7, 25, 1000
    <name>.timesteps               [S]      the step sequence (S = 25 prior/decoder, 7 super_res, 5 unclipped)
    <name>.prev_timesteps          [S]      the prev_timestep passed (-1 where the pipeline passes None)
    <name>.model_output            [S, ...] model outputs fed to step()
    <name>.sample                  [S, ...] the sample fed to each step (the previous step's output)
    <name>.noise                   [S, ...] the injected noise (zeros where step() draws none: t = 0)
    <name>.prev_sample             [S, ...] step().prev_sample
    <name>.pred_original_sample    [S, ...] step().pred_original_sample
      for name in prior [S, 2, 8] (model output same shape), decoder (model output [S, 2, 6, 4, 4],
      sample [S, 2, 3, 4, 4]), super_res [S, 2, 3, 4, 4], unclipped (fixed_small_log, epsilon,
      clip_sample=False) [S, 2, 3, 4, 4]
    extra.* single steps with prev_timestep None (t-1) and unusual jumps, each scheduler config:
      extra.<name>.timestep / .prev_timestep (-2 = None) / .model_output / .sample / .noise / .prev_sample
    metadata: each scheduler's config as JSON (`<name>.config`)

  ops.safetensors
    embedding.timesteps            [5]      t values (0, 1, 37, 500.5, 999)
    embedding.dim_D                [5, D]   get_timestep_embedding(t, D, flip_sin_to_cos=True,
                                            downscale_freq_shift=0) for D in 1, 2, 7, 32, 33, 128
    embedding.shift1.dim_16        [5, 16]  the same with flip_sin_to_cos=False, downscale_freq_shift=1
    resize.input_8                 [2, 3, 8, 8]    random image in [-1.2, 1.2]
    resize.input_16                [1, 2, 16, 16]
    resize.input_37x23             [1, 1, 37, 23]
    resize.aa.8_to_32  [2, 3, 32, 32]  F.interpolate(bicubic, antialias=True, align_corners=False)
    resize.aa.16_to_64 [1, 2, 64, 64]  (Karlo's x4)
    resize.aa.16_to_5  [1, 2, 5, 5]    (downsampling: support scaled by the factor)
    resize.aa.37x23_to_12x30 [1, 1, 12, 30] (down along H, up along W)
    resize.aa.8_to_8   [2, 3, 8, 8]
    resize.plain.*     the same four sizes without antialias (a = -0.75)
    slerp.low, slerp.high [3, 32], slerp.fractions [5], slerp.out [5, 3, 32]  spherical interpolation per
                       row (float64 numpy, as dcgan.torch's slerp), for fractions 0, 0.25, 0.5, 0.9, 1

  modules.safetensors  one forward of each module, inputs as the pipeline builds them (B = 2 prompts,
                       classifier-free guidance doubles the batch to 4: unconditional first)
    text.input_ids [4, 16], text.attention_mask [4, 16], text.last_hidden_state [4, 16, 32],
    text.text_embeds [4, 32]   (prompts "", "", PROMPT_0, PROMPT_1)
    text.hidden_states.0-2 [4, 16, 32]   the embeddings and each layer's output
    prior.latents [4, 32], prior.timestep [1], prior.proj_embedding [4, 32],
    prior.encoder_hidden_states [4, 16, 32], prior.attention_mask [4, 16], prior.output [4, 32],
    prior.post_process_input [2, 32], prior.post_processed [2, 32]
    prior.inner.time_embedding [4, 32], prior.inner.transformer_blocks.0-1 [4, 20, 32],
    prior.inner.norm_out [4, 20, 32]   (inside prior.output's forward)
    text_proj.image_embeddings [2, 32], text_proj.encoder_hidden_states [4, 20, 48],
    text_proj.additive_time_embeddings [4, 64]
    decoder.sample [4, 3, 8, 8], decoder.timestep [1], decoder.attention_mask [4, 20],
    decoder.output [4, 6, 8, 8] (encoder_hidden_states / class_labels: text_proj's outputs)
    decoder.inner.time_embedding [4, 64] (before the class embedding is added), .conv_in [4, 16, 8, 8],
    .down_blocks.0 [4, 16, 4, 4], .down_blocks.1 [4, 32, 4, 4], .mid_block [4, 32, 4, 4],
    .up_blocks.0 [4, 32, 8, 8], .up_blocks.1 [4, 16, 8, 8], .conv_norm_out [4, 16, 8, 8]
    (inside decoder.output's forward; a block's hidden states, not its skip tensors)
    super_res_first.sample [2, 6, 32, 32], super_res_first.timestep [1], super_res_first.output [2, 3, 32, 32]
    super_res_last.*  the same for the last-step UNet

  chain.safetensors  the whole pipeline, 25 / 25 / 7 steps, guidance 4.0 / 8.0, all noise given
    input_ids [2, 16], attention_mask [2, 16] (the prompts; uncond_input_ids [1, 16] for "")
    prior_latents [2, 32], prior_step_noise [24, 2, 32]
    decoder_latents [2, 3, 8, 8], decoder_step_noise [24, 2, 3, 8, 8]
    super_res_latents [2, 3, 32, 32], super_res_step_noise [6, 2, 3, 32, 32]
    prior_model_outputs [25, 4, 32]        the prior's output at each step (guidance batch: unconditional first)
    prior_final_latents [2, 32]            the prior loop's result, before post_process_latents
    decoder_model_outputs [25, 4, 6, 8, 8] the decoder's output at each step (guidance batch)
    super_res_model_outputs [7, 2, 3, 32, 32] super_res_first's output at steps 0-5, super_res_last's at 6
    image_embeddings [2, 32]   the prior's output after post_process_latents
    image_small [2, 3, 8, 8]   the decoder's output (clamped to [-1, 1])
    image_upscaled [2, 3, 32, 32]
    image [2, 3, 32, 32]       the pipeline's output (x 0.5 + 0.5, clamped), NCHW
    metadata: prompts, step counts, guidance scales

  noise_one_image.safetensors  the chain's recorded noise for its first image alone (its six noise
                               tensors with B = 1), as dalle_generate's noise_path / `--noise` take it:
                               "a red cat on the mat" with it reproduces chain's image[0]

  variation.safetensors  the image-variations side: a tiny CLIPVisionModelWithProjection (32x32 images,
                         patch 8, width 32, 2 layers, 2 heads, projection 32, quick_gelu; every parameter perturbed)
                         with CLIPImageProcessor at 32 (UnCLIPImageVariationPipeline around the same other parts)
    input_image [37, 41, 3] U8 (also variation_input.png), second_image [32, 32, 3] U8
    encoder.pixel_values [2, 3, 32, 32], encoder.image_embeds [2, 32]   the processor and encoder on both
    variation.image [1, 3, 32, 32]   UnCLIPImageVariationPipeline on input_image, 5 / 3 steps, variation_noise
    image_interpolation.embeddings [3, 32], .image [3, 3, 32, 32]   diffusers' community unclip_image_interpolation
                         between the two images (slerp, shared decoder latents), 3 / 2 steps, image_interpolation_noise
    text_interpolation.image [3, 3, 32, 32]   diffusers' community unclip_text_interpolation between the two
                         prompts (slerp of text embeddings and hidden states, union mask), 3 / 3 / 2 steps,
                         text_interpolation_noise
  variation_noise, image_interpolation_noise, text_interpolation_noise  .safetensors  their noise, as
                         dalle_generate's noise_path takes it
  bundle_metadata.safetensors  no tensors: the metadata tools/convert_unclip.py writes for this pipeline
                               with --image-encoder (f16), for the Swift reader of unCLIP bundles
  bundle_metadata_variation.safetensors  the same for the variations pipeline converted alone (no prior)
  tiny_unclip_f16.safetensors  the tiny pipeline as tools/convert_unclip.py --dtype f16 --image-encoder converts
                               it (the same tensors and metadata, written in a reproducible byte order)

Then it converts the pipeline folder with tools/convert_unclip.py (f32, f16, bf16; from .safetensors and
from .bin state dicts) and checks every tensor name, shape and value, every config and the tokenizer
against the folder.
"""
import argparse
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

import diffusers.schedulers.scheduling_unclip as scheduling_unclip
from diffusers import PriorTransformer, UNet2DConditionModel, UNet2DModel, UnCLIPScheduler
from diffusers.models.embeddings import get_timestep_embedding
from PIL import Image
from transformers import (CLIPImageProcessor, CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer,
                          CLIPVisionConfig, CLIPVisionModelWithProjection)

try:  # diffusers >= 0.3x keeps unCLIP among the deprecated pipelines
    from diffusers.pipelines.deprecated.unclip import UnCLIPImageVariationPipeline, UnCLIPPipeline
    from diffusers.pipelines.deprecated.unclip.text_proj import UnCLIPTextProjModel
except ImportError:
    from diffusers import UnCLIPImageVariationPipeline, UnCLIPPipeline
    from diffusers.pipelines.unclip.text_proj import UnCLIPTextProjModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import convert_unclip  # noqa: E402
from convert_unclip import clip_vocabulary  # noqa: E402
OUT = os.path.join(ROOT, "Tests", "DalleCoreTests", "Golden", "unclip")

PROMPTS = ["a red cat on the mat", "two blue squares"]
CONTEXT = 16            # tokenizer model_max_length = text positions = prior num_embeddings
TEXT_WIDTH, EMBED = 32, 32
DECODER_CHANNELS, SUPER_RES_CHANNELS, GROUPS = (16, 32), (8, 16), 4
TIME_EMBED = 4 * DECODER_CHANNELS[0]  # UNet2DConditionModel's time embedding width
CROSS = 48
DECODER_SIZE, SUPER_RES_SIZE = 8, 32
STEPS = (25, 25, 7)
GUIDANCE = (4.0, 8.0)
IMAGE_SIZE, PATCH, VISION_WIDTH, VISION_HEADS = 32, 8, 32, 2   # the image encoder (CLIP's vision tower)
INPUT_SIZE = (41, 37)   # the variation input (width, height): resized to 35 x 32, then centre-cropped
VARIATION_STEPS = (5, 3)          # decoder, super-resolution steps of the recorded variation
INTERPOLATION_STEPS = (3, 3, 2)   # prior, decoder, super-resolution steps of the recorded interpolations
FRAMES = 3

SCHEDULERS = {  # Karlo's three (diffusers' convert_kakao_brain_unclip_to_diffusers.py) and one without clipping
    "prior": dict(variance_type="fixed_small_log", prediction_type="sample", num_train_timesteps=1000,
                  clip_sample_range=5.0),
    "decoder": dict(variance_type="learned_range", prediction_type="epsilon", num_train_timesteps=1000),
    "super_res": dict(variance_type="fixed_small_log", prediction_type="epsilon", num_train_timesteps=1000),
    "unclipped": dict(variance_type="fixed_small_log", prediction_type="epsilon", num_train_timesteps=1000,
                      clip_sample=False),
}


# ---------------------------------------------------------------------------------------------
# Noise tape: the scheduler's randn_tensor hands out pre-drawn tensors, in order.

class NoiseTape:
    def __init__(self):
        self.queue = []

    def __call__(self, shape, generator=None, device=None, dtype=None, layout=None, **kwargs):
        if not self.queue:
            raise RuntimeError(f"noise tape empty; step asked for {tuple(shape)}")
        t = self.queue.pop(0)
        if tuple(t.shape) != tuple(shape):
            raise RuntimeError(f"noise tape holds {tuple(t.shape)}, step asked for {tuple(shape)}")
        return t.to(dtype=dtype or t.dtype)


TAPE = NoiseTape()
scheduling_unclip.randn_tensor = TAPE


STORED = {torch.float32: "F32", torch.float16: "F16", torch.uint8: "U8"}


def write_safetensors(path, tensors, metadata):
    """save_file's format, byte for byte reproducible: sorted names and metadata (the library's own
    writer orders metadata by hash). F16 and U8 tensors are kept, others stored as F32; wider types
    first, so every tensor is aligned to its element size."""
    header, blobs, offset = {"__metadata__": dict(sorted(metadata.items()))}, [], 0
    stored = {k: (v if v.dtype in STORED else v.to(torch.float32)).detach().contiguous() for k, v in tensors.items()}
    for name in sorted(stored, key=lambda k: (-stored[k].element_size(), k)):
        t = stored[name]
        data = t.numpy().tobytes()
        header[name] = {"dtype": STORED[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little") + text + b"".join(blobs))


def f32(x):
    return x.detach().to(torch.float32).contiguous().clone()


# ---------------------------------------------------------------------------------------------
# Tokenizer: CLIP's byte-level BPE format with a tiny vocabulary (the order convert_unclip checks).

MERGES = ["r e", "re d</w>", "c a", "ca t</w>", "t h", "th e</w>", "o n</w>", "m a", "ma t</w>", "t w",
          "tw o</w>", "b l", "bl u", "blu e</w>", "s q", "sq u", "a r", "ar e", "are s</w>"]


def write_tokenizer(folder):
    os.makedirs(folder, exist_ok=True)
    vocab = clip_vocabulary([tuple(m.split(" ")) for m in MERGES])
    with open(os.path.join(folder, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
    with open(os.path.join(folder, "merges.txt"), "w", encoding="utf-8") as f:
        f.write("#version: 0.2\n" + "\n".join(MERGES) + "\n")
    tok = CLIPTokenizer(os.path.join(folder, "vocab.json"), os.path.join(folder, "merges.txt"),
                        model_max_length=CONTEXT)
    return tok, len(vocab)


# ---------------------------------------------------------------------------------------------
# The tiny pipeline.

def perturb(model, seed):
    """Adds seeded noise to every parameter (zero-initialised ones included), then rounds each to a
    float16-representable value."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            scale = 0.05 if p.abs().max() > 0 else 0.5
            p.add_(torch.randn(p.shape, generator=g) * scale)
            p.copy_(p.to(torch.float16).to(torch.float32))
    return model.eval()


def build_pipeline(tokenizer_dir):
    torch.manual_seed(0)
    tokenizer, vocab_size = write_tokenizer(tokenizer_dir)
    bos, eos = tokenizer.convert_tokens_to_ids(["<|startoftext|>", "<|endoftext|>"])
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=TEXT_WIDTH, intermediate_size=4 * TEXT_WIDTH, projection_dim=EMBED,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=CONTEXT, hidden_act="quick_gelu",
        layer_norm_eps=1e-5, bos_token_id=bos, eos_token_id=eos, pad_token_id=eos))
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, num_layers=2, embedding_dim=EMBED,
                             num_embeddings=CONTEXT, additional_embeddings=4)
    text_proj = UnCLIPTextProjModel(clip_extra_context_tokens=4, clip_embeddings_dim=EMBED,
                                    time_embed_dim=TIME_EMBED, cross_attention_dim=CROSS)
    decoder = UNet2DConditionModel(
        sample_size=DECODER_SIZE, in_channels=3, out_channels=6, layers_per_block=1,
        down_block_types=("ResnetDownsampleBlock2D", "SimpleCrossAttnDownBlock2D"),
        up_block_types=("SimpleCrossAttnUpBlock2D", "ResnetUpsampleBlock2D"),
        mid_block_type="UNetMidBlock2DSimpleCrossAttn", block_out_channels=DECODER_CHANNELS,
        norm_num_groups=GROUPS, cross_attention_dim=CROSS, attention_head_dim=8, class_embed_type="identity",
        resnet_time_scale_shift="scale_shift")
    super_res = dict(
        sample_size=SUPER_RES_SIZE, in_channels=6, out_channels=3, layers_per_block=1,
        down_block_types=("ResnetDownsampleBlock2D", "ResnetDownsampleBlock2D"),
        up_block_types=("ResnetUpsampleBlock2D", "ResnetUpsampleBlock2D"),
        block_out_channels=SUPER_RES_CHANNELS, norm_num_groups=GROUPS, add_attention=False)
    super_res_first, super_res_last = UNet2DModel(**super_res), UNet2DModel(**super_res)
    for i, m in enumerate([text_encoder, prior, text_proj, decoder, super_res_first, super_res_last]):
        perturb(m, 100 + i)
    # The prior's output statistics: a spread like a real CLIP embedding's, never a zero std.
    with torch.no_grad():
        prior.clip_std.abs_().add_(0.5)
        prior.clip_std.copy_(prior.clip_std.to(torch.float16).to(torch.float32))
    return UnCLIPPipeline(
        prior=prior, decoder=decoder, text_proj=text_proj, text_encoder=text_encoder, tokenizer=tokenizer,
        super_res_first=super_res_first, super_res_last=super_res_last,
        prior_scheduler=UnCLIPScheduler(**SCHEDULERS["prior"]),
        decoder_scheduler=UnCLIPScheduler(**SCHEDULERS["decoder"]),
        super_res_scheduler=UnCLIPScheduler(**SCHEDULERS["super_res"]))


def build_variation_pipeline(pipe):
    """Karlo's image-variations pipeline around `pipe`'s parts: a tiny CLIPVisionModelWithProjection
    (every parameter perturbed) and CLIP's image processor at its size."""
    torch.manual_seed(1)
    image_encoder = perturb(CLIPVisionModelWithProjection(CLIPVisionConfig(
        image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=VISION_WIDTH, intermediate_size=4 * VISION_WIDTH,
        num_hidden_layers=2, num_attention_heads=VISION_HEADS, projection_dim=EMBED, hidden_act="quick_gelu",
        layer_norm_eps=1e-5)), 106)
    feature_extractor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                           crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return UnCLIPImageVariationPipeline(
        decoder=pipe.decoder, text_encoder=pipe.text_encoder, tokenizer=pipe.tokenizer, text_proj=pipe.text_proj,
        feature_extractor=feature_extractor, image_encoder=image_encoder, super_res_first=pipe.super_res_first,
        super_res_last=pipe.super_res_last, decoder_scheduler=pipe.decoder_scheduler,
        super_res_scheduler=pipe.super_res_scheduler)


# ---------------------------------------------------------------------------------------------
# Fixtures.

def taped_step(scheduler, model_output, t, sample, prev, g):
    """(the noise the step drew, or zeros where it draws none (t = 0); step()'s output), the noise
    drawn from `g` either way so the generator's sequence does not depend on t."""
    noise = torch.randn(sample.shape, generator=g)
    if t > 0:
        TAPE.queue.append(noise.clone())
    else:
        noise = torch.zeros(sample.shape)
    r = scheduler.step(model_output, t, sample, prev_timestep=prev)
    assert not TAPE.queue
    return noise, r


def scheduler_fixtures():
    out, meta = {}, {}
    g = torch.Generator().manual_seed(11)
    ref = UnCLIPScheduler(**SCHEDULERS["prior"])
    out["betas"] = f32(ref.betas)
    out["alphas_cumprod"] = f32(ref.alphas_cumprod)
    for n in (2, 3, 7, 25, 1000):
        ref.set_timesteps(n)
        out[f"timesteps_{n}"] = f32(ref.timesteps.to(torch.float32))
    shapes = {"prior": ((2, 8), (2, 8), 25), "decoder": ((2, 6, 4, 4), (2, 3, 4, 4), 25),
              "super_res": ((2, 3, 4, 4), (2, 3, 4, 4), 7), "unclipped": ((2, 3, 4, 4), (2, 3, 4, 4), 5)}
    for name, (out_shape, sample_shape, n) in shapes.items():
        s = UnCLIPScheduler(**SCHEDULERS[name])
        config = {k: v for k, v in s.config.items() if not k.startswith("_")}  # "_use_default_values": set order
        meta[f"{name}.config"] = json.dumps(config, sort_keys=True)
        s.set_timesteps(n)
        ts = s.timesteps.tolist()
        sample = torch.randn(sample_shape, generator=g)
        rec = {k: [] for k in ("prev_timesteps", "model_output", "sample", "noise", "prev_sample", "pred_original_sample")}
        for i, t in enumerate(ts):
            model_output = torch.randn(out_shape, generator=g) * (3.0 if name == "prior" else 1.0)
            if name == "decoder":
                model_output[:, 3:] = torch.rand(model_output[:, 3:].shape, generator=g) * 2.4 - 1.2
            prev = ts[i + 1] if i + 1 < len(ts) else None
            noise, r = taped_step(s, model_output, t, sample, prev, g)
            rec["prev_timesteps"].append(float(prev if prev is not None else -1))
            for k, v in (("model_output", model_output), ("sample", sample), ("noise", noise),
                         ("prev_sample", r.prev_sample), ("pred_original_sample", r.pred_original_sample)):
                rec[k].append(f32(v))
            sample = r.prev_sample
        out[f"{name}.timesteps"] = torch.tensor(ts, dtype=torch.float32)
        out[f"{name}.prev_timesteps"] = torch.tensor(rec.pop("prev_timesteps"), dtype=torch.float32)
        for k, v in rec.items():
            out[f"{name}.{k}"] = torch.stack(v)
        # Single steps: prev_timestep None (t - 1 and the table's beta), long jumps, straight to -1.
        extras = [(500, None), (1, None), (0, None), (999, 0), (999, 998), (640, 3), (2, -1)]
        rec = {k: [] for k in ("timestep", "prev_timestep", "model_output", "sample", "noise", "prev_sample")}
        for t, prev in extras:
            sample = torch.randn(sample_shape, generator=g)
            model_output = torch.randn(out_shape, generator=g)
            if name == "decoder":
                model_output[:, 3:] = torch.rand(model_output[:, 3:].shape, generator=g) * 1.8 - 0.9
            noise, r = taped_step(s, model_output, t, sample, prev, g)
            rec["timestep"].append(float(t))
            rec["prev_timestep"].append(float(-2 if prev is None else prev))
            for k, v in (("model_output", model_output), ("sample", sample), ("noise", noise),
                         ("prev_sample", r.prev_sample)):
                rec[k].append(f32(v))
        for k, v in rec.items():
            out[f"extra.{name}.{k}"] = torch.tensor(v) if isinstance(v[0], float) else torch.stack(v)
    return out, meta


def ops_fixtures():
    out = {}
    t = torch.tensor([0.0, 1.0, 37.0, 500.5, 999.0])
    out["embedding.timesteps"] = t
    for d in (1, 2, 7, 32, 33, 128):
        out[f"embedding.dim_{d}"] = f32(get_timestep_embedding(t, d, flip_sin_to_cos=True, downscale_freq_shift=0))
    out["embedding.shift1.dim_16"] = f32(get_timestep_embedding(t, 16, flip_sin_to_cos=False, downscale_freq_shift=1))
    g = torch.Generator().manual_seed(21)
    inputs = {"8": torch.rand((2, 3, 8, 8), generator=g) * 2.4 - 1.2,
              "16": torch.rand((1, 2, 16, 16), generator=g) * 2.4 - 1.2,
              "37x23": torch.rand((1, 1, 37, 23), generator=g) * 2.4 - 1.2}
    for k, v in inputs.items():
        out[f"resize.input_{k}"] = v
    cases = {"8_to_32": ("8", (32, 32)), "16_to_64": ("16", (64, 64)), "16_to_5": ("16", (5, 5)),
             "37x23_to_12x30": ("37x23", (12, 30)), "8_to_8": ("8", (8, 8))}
    for name, (src, size) in cases.items():
        x = inputs[src]
        out[f"resize.aa.{name}"] = f32(F.interpolate(x, size=size, mode="bicubic", antialias=True, align_corners=False))
        out[f"resize.plain.{name}"] = f32(F.interpolate(x, size=size, mode="bicubic", antialias=False, align_corners=False))
    # Spherical interpolation (DALL-E 2's interpolations between CLIP embeddings), in float64 per row.
    low, high = torch.randn((3, 32), generator=g), torch.randn((3, 32), generator=g)
    high[2] = -0.3 * low[2] + 0.1 * high[2]  # a wide angle
    fractions = [0.0, 0.25, 0.5, 0.9, 1.0]
    out.update({"slerp.low": low, "slerp.high": high, "slerp.fractions": torch.tensor(fractions),
                "slerp.out": torch.tensor(np.stack([[slerp(t, a, b) for a, b in zip(low.double().numpy(), high.double().numpy())]
                                                    for t in fractions]), dtype=torch.float32)})
    return out


def slerp(t, low, high):
    """The usual slerp (dcgan.torch issue 14): along the great circle, lengths blended too."""
    omega = np.arccos(np.clip(np.dot(low / np.linalg.norm(low), high / np.linalg.norm(high)), -1, 1))
    so = np.sin(omega)
    if so == 0:
        return (1.0 - t) * low + t * high
    return np.sin((1.0 - t) * omega) / so * low + np.sin(t * omega) / so * high


class recording:
    """Records the first tensor output of the named submodules ("blocks.*": each child of `blocks`) under
    prefix + name while the block runs, for debugging a port layer by layer."""

    def __init__(self, out, prefix, model, names):
        modules = dict(model.named_modules())
        self.targets = []
        for name in names:
            if name.endswith(".*"):
                parent = name[:-2]
                self.targets += [f"{parent}.{child}" for child, _ in modules[parent].named_children()]
            else:
                self.targets.append(name)
        self.out, self.prefix, self.modules, self.hooks = out, prefix, modules, []

    def __enter__(self):
        for name in self.targets:
            def hook(module, args, output, name=name):
                first = output[0] if isinstance(output, tuple) else output
                assert self.prefix + name not in self.out, f"{name} ran twice"
                self.out[self.prefix + name] = f32(first)
            self.hooks.append(self.modules[name].register_forward_hook(hook))

    def __exit__(self, *exc):
        for h in self.hooks:
            h.remove()
        assert exc[0] is not None or all(self.prefix + n in self.out for n in self.targets)


def module_fixtures(pipe):
    out = {}
    tok = pipe.tokenizer
    text = tok(["", ""] + PROMPTS, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")
    enc = pipe.text_encoder(text.input_ids, output_hidden_states=True)
    for i, h in enumerate(enc.hidden_states):  # the embeddings, then each layer's output (before the final norm)
        out[f"text.hidden_states.{i}"] = f32(h)
    out["text.input_ids"] = text.input_ids.float()
    out["text.attention_mask"] = text.attention_mask.float()
    out["text.last_hidden_state"] = f32(enc.last_hidden_state)
    out["text.text_embeds"] = f32(enc.text_embeds)
    mask = text.attention_mask.bool()

    g = torch.Generator().manual_seed(31)
    latents = torch.randn((2, EMBED), generator=g)
    prior_in = torch.cat([latents, latents])
    t_prior = 957
    with recording(out, "prior.inner.", pipe.prior, ["time_embedding", "transformer_blocks.*", "norm_out"]):
        pred = pipe.prior(prior_in, timestep=t_prior, proj_embedding=enc.text_embeds,
                          encoder_hidden_states=enc.last_hidden_state, attention_mask=mask).predicted_image_embedding
    out.update({"prior.latents": prior_in, "prior.timestep": torch.tensor([float(t_prior)]),
                "prior.proj_embedding": f32(enc.text_embeds), "prior.encoder_hidden_states": f32(enc.last_hidden_state),
                "prior.attention_mask": mask.float(), "prior.output": f32(pred)})
    post_in = torch.randn((2, EMBED), generator=g)
    out["prior.post_process_input"] = post_in
    out["prior.post_processed"] = f32(pipe.prior.post_process_latents(post_in))

    image_embeddings = torch.randn((2, EMBED), generator=g)
    hidden, additive = pipe.text_proj(image_embeddings=image_embeddings, prompt_embeds=enc.text_embeds,
                                      text_encoder_hidden_states=enc.last_hidden_state, do_classifier_free_guidance=True)
    out.update({"text_proj.image_embeddings": image_embeddings, "text_proj.encoder_hidden_states": f32(hidden),
                "text_proj.additive_time_embeddings": f32(additive)})

    decoder_mask = F.pad(mask, (pipe.text_proj.clip_extra_context_tokens, 0), value=True)
    sample = torch.randn((2, 3, DECODER_SIZE, DECODER_SIZE), generator=g)
    sample = torch.cat([sample, sample])
    t_dec = 416
    with recording(out, "decoder.inner.", pipe.decoder,
                   ["time_embedding", "conv_in", "down_blocks.*", "mid_block", "up_blocks.*", "conv_norm_out"]):
        dec = pipe.decoder(sample=sample, timestep=t_dec, encoder_hidden_states=hidden, class_labels=additive,
                           attention_mask=decoder_mask).sample
    out.update({"decoder.sample": sample, "decoder.timestep": torch.tensor([float(t_dec)]),
                "decoder.attention_mask": decoder_mask.float(), "decoder.output": f32(dec)})

    for name, unet, t in (("super_res_first", pipe.super_res_first, 833), ("super_res_last", pipe.super_res_last, 0)):
        x = torch.cat([torch.randn((2, 3, SUPER_RES_SIZE, SUPER_RES_SIZE), generator=g),
                       torch.rand((2, 3, SUPER_RES_SIZE, SUPER_RES_SIZE), generator=g) * 2 - 1], dim=1)
        y = unet(sample=x, timestep=t).sample
        out.update({f"{name}.sample": x, f"{name}.timestep": torch.tensor([float(t)]), f"{name}.output": f32(y)})
    return out


def chain_fixture(pipe):
    g = torch.Generator().manual_seed(41)
    b = len(PROMPTS)
    p, d, s = STEPS
    noise = {
        "prior_latents": torch.randn((b, EMBED), generator=g),
        "prior_step_noise": torch.randn((p - 1, b, EMBED), generator=g),
        "decoder_latents": torch.randn((b, 3, DECODER_SIZE, DECODER_SIZE), generator=g),
        "decoder_step_noise": torch.randn((d - 1, b, 3, DECODER_SIZE, DECODER_SIZE), generator=g),
        "super_res_latents": torch.randn((b, 3, SUPER_RES_SIZE, SUPER_RES_SIZE), generator=g),
        "super_res_step_noise": torch.randn((s - 1, b, 3, SUPER_RES_SIZE, SUPER_RES_SIZE), generator=g),
    }
    TAPE.queue = list(noise["prior_step_noise"]) + list(noise["decoder_step_noise"]) + list(noise["super_res_step_noise"])
    recorded = {}
    post_process = pipe.prior.post_process_latents

    def record_post_process(latents):
        recorded["prior_final_latents"] = latents.clone()
        recorded["image_embeddings"] = post_process(latents)
        return recorded["image_embeddings"]

    # Every model output the loops see, in call order (the prior's and decoder's with the guidance batch).
    calls = {"prior": [], "decoder": [], "super_res": []}
    hooks = [pipe.prior.register_forward_hook(lambda m, a, o: calls["prior"].append(o.predicted_image_embedding.clone())),
             pipe.decoder.register_forward_hook(lambda m, a, o: calls["decoder"].append(o.sample.clone()))]
    for unet, tag in ((pipe.super_res_first, 0.0), (pipe.super_res_last, 1.0)):
        hooks.append(unet.register_forward_hook(lambda m, a, o, tag=tag: calls["super_res"].append((tag, o.sample.clone()))))

    interpolate = F.interpolate

    # The pipeline passes antialias=True only when inspect.signature(F.interpolate) lists it: keep the signature.
    @functools.wraps(interpolate)
    def record_interpolate(x, *args, **kwargs):
        y = interpolate(x, *args, **kwargs)
        if kwargs.get("mode") == "bicubic":  # the UNets' own nearest upsampling goes through here too
            assert kwargs.get("antialias") is True, kwargs
            assert "image_small" not in recorded
            recorded["image_small"], recorded["image_upscaled"] = x, y
        return y

    pipe.prior.post_process_latents = record_post_process
    F.interpolate = record_interpolate
    try:
        image = pipe(PROMPTS, prior_num_inference_steps=p, decoder_num_inference_steps=d,
                     super_res_num_inference_steps=s, prior_latents=noise["prior_latents"].clone(),
                     decoder_latents=noise["decoder_latents"].clone(),
                     super_res_latents=noise["super_res_latents"].clone(), prior_guidance_scale=GUIDANCE[0],
                     decoder_guidance_scale=GUIDANCE[1], output_type="np").images
    finally:
        F.interpolate = interpolate
        del pipe.prior.post_process_latents
        for h in hooks:
            h.remove()
    assert [tag for tag, _ in calls["super_res"]] == [0.0] * (s - 1) + [1.0], "super_res_last on the last step only"
    recorded["prior_model_outputs"] = torch.stack(calls["prior"])
    recorded["decoder_model_outputs"] = torch.stack(calls["decoder"])
    recorded["super_res_model_outputs"] = torch.stack([o for _, o in calls["super_res"]])
    assert not TAPE.queue, f"{len(TAPE.queue)} noise tensors left on the tape"
    text = pipe.tokenizer(PROMPTS, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")
    uncond = pipe.tokenizer([""], padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")
    out = {"input_ids": text.input_ids.float(), "attention_mask": text.attention_mask.float(),
           "uncond_input_ids": uncond.input_ids.float(), **noise}
    out.update({k: f32(v) for k, v in recorded.items()})
    out["image"] = f32(torch.from_numpy(np.ascontiguousarray(image)).permute(0, 3, 1, 2))
    meta = {"prompts": json.dumps(PROMPTS), "steps": json.dumps(list(STEPS)), "guidance": json.dumps(list(GUIDANCE))}
    return out, meta


def input_images():
    """The variation's input (INPUT_SIZE, a smooth pattern with some noise) and a second image of the
    encoder's own size, as uint8 HxWx3 arrays."""
    g = np.random.default_rng(5)
    images = []
    for (w, h), phase in ((INPUT_SIZE, 0.0), ((IMAGE_SIZE, IMAGE_SIZE), 1.3)):
        y, x = np.mgrid[0:h, 0:w]
        rgb = np.stack([np.sin(x / 5 + phase), np.cos(y / 4 - phase), np.sin((x + y) / 7)], axis=-1) * 90 + 128
        images.append(np.clip(rgb + g.normal(0, 12, rgb.shape), 0, 255).astype(np.uint8))
    return images


def taped_noise(g, b, decoder_steps, super_res_steps, prior_steps=0):
    """Initial latents and step noise for `b` images, taped for the scheduler in step order."""
    noise = {}
    if prior_steps:
        noise["prior_latents"] = torch.randn((b, EMBED), generator=g)
        noise["prior_step_noise"] = torch.randn((prior_steps - 1, b, EMBED), generator=g)
    noise.update({
        "decoder_latents": torch.randn((b, 3, DECODER_SIZE, DECODER_SIZE), generator=g),
        "decoder_step_noise": torch.randn((decoder_steps - 1, b, 3, DECODER_SIZE, DECODER_SIZE), generator=g),
        "super_res_latents": torch.randn((b, 3, SUPER_RES_SIZE, SUPER_RES_SIZE), generator=g),
        "super_res_step_noise": torch.randn((super_res_steps - 1, b, 3, SUPER_RES_SIZE, SUPER_RES_SIZE), generator=g)})
    TAPE.queue = [n for key in ("prior_step_noise", "decoder_step_noise", "super_res_step_noise") if key in noise
                  for n in noise[key]]
    return noise


def nchw(images):
    return f32(torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2))


def slerp_torch(t, low, high):
    """The unCLIP interpolation community pipelines' slerp: over the whole tensor, in float32."""
    low_n, high_n = low / torch.norm(low), high / torch.norm(high)
    omega = torch.acos((low_n * high_n).sum())
    so = torch.sin(omega)
    return torch.sin((1.0 - t) * omega) / so * low + torch.sin(t * omega) / so * high


def variation_fixtures(pipe, variation):
    """The image encoder's forward, a variation of the input image and the two interpolations, each
    with its noise (as a separate file dalle_generate's noise_path takes)."""
    out, noise_files = {}, {}
    first, second = input_images()
    pixels = variation.feature_extractor(images=[Image.fromarray(first), Image.fromarray(second)],
                                         return_tensors="pt").pixel_values
    embeds = variation.image_encoder(pixels).image_embeds
    out.update({"input_image": torch.from_numpy(first), "second_image": torch.from_numpy(second),
                "encoder.pixel_values": f32(pixels), "encoder.image_embeds": f32(embeds)})

    # A variation of the first image (diffusers' UnCLIPImageVariationPipeline), B = 1.
    g = torch.Generator().manual_seed(43)
    d, s = VARIATION_STEPS
    noise = taped_noise(g, 1, d, s)
    image = variation(Image.fromarray(first), decoder_num_inference_steps=d, super_res_num_inference_steps=s,
                      decoder_latents=noise["decoder_latents"].clone(), super_res_latents=noise["super_res_latents"].clone(),
                      output_type="np").images
    assert not TAPE.queue
    out["variation.image"] = nchw(image)
    noise_files["variation_noise"] = noise

    # Between the two images' embeddings (diffusers' community unclip_image_interpolation: slerp over
    # linspace(0, 1, frames), the same decoder latents for every frame).
    # The noise is chosen so that the images are well conditioned: embeddings moved by 1e-6 move no value by
    # 1e-4 (with other draws, a pixel where the few-step decoder's clipped x0 is not saturated can move by 1e-2).
    _, d, s = INTERPOLATION_STEPS

    def interpolation(embeddings):
        noise = taped_noise(torch.Generator().manual_seed(44), FRAMES, d, s)
        noise["decoder_latents"] = noise["decoder_latents"][0:1].repeat(FRAMES, 1, 1, 1)
        frames = torch.stack([slerp_torch(t, embeddings[0], embeddings[1]) for t in torch.linspace(0, 1, FRAMES)])
        image = variation(image_embeddings=frames, decoder_num_inference_steps=d, super_res_num_inference_steps=s,
                          decoder_latents=noise["decoder_latents"].clone(), super_res_latents=noise["super_res_latents"].clone(),
                          output_type="np").images
        assert not TAPE.queue
        return frames, image, noise

    frames, image, noise = interpolation(embeds)
    moved = interpolation(embeds + 1e-6 * torch.randn(embeds.shape, generator=torch.Generator().manual_seed(1)))[1]
    assert np.abs(moved - image).max() < 1e-4, "ill-conditioned interpolation fixture: pick another noise seed"
    out.update({"image_interpolation.embeddings": f32(frames), "image_interpolation.image": nchw(image)})
    noise_files["image_interpolation_noise"] = noise

    # Between the two prompts (diffusers' community unclip_text_interpolation: slerp of the text embeddings
    # and of the whole last hidden state, the union of the masks; then prior, decoder, super-resolution).
    p, d, s = INTERPOLATION_STEPS
    noise = taped_noise(torch.Generator().manual_seed(45), FRAMES, d, s, prior_steps=p)
    text = pipe.tokenizer(PROMPTS, padding="max_length", max_length=CONTEXT, truncation=True, return_tensors="pt")
    enc = pipe.text_encoder(text.input_ids)
    fractions = torch.linspace(0, 1, FRAMES)
    embeds_t = torch.stack([slerp_torch(t, enc.text_embeds[0], enc.text_embeds[1]) for t in fractions])
    hidden_t = torch.stack([slerp_torch(t, enc.last_hidden_state[0], enc.last_hidden_state[1]) for t in fractions])
    mask = torch.max(text.attention_mask[0], text.attention_mask[1]).bool().unsqueeze(0).repeat(FRAMES, 1)
    image = pipe(text_model_output=(embeds_t, hidden_t), text_attention_mask=mask, prior_num_inference_steps=p,
                 decoder_num_inference_steps=d, super_res_num_inference_steps=s,
                 prior_latents=noise["prior_latents"].clone(), decoder_latents=noise["decoder_latents"].clone(),
                 super_res_latents=noise["super_res_latents"].clone(), prior_guidance_scale=GUIDANCE[0],
                 decoder_guidance_scale=GUIDANCE[1], output_type="np").images
    assert not TAPE.queue
    out["text_interpolation.image"] = nchw(image)
    noise_files["text_interpolation_noise"] = noise
    meta = {"prompts": json.dumps(PROMPTS), "variation_steps": json.dumps(list(VARIATION_STEPS)),
            "interpolation_steps": json.dumps(list(INTERPOLATION_STEPS)), "frames": str(FRAMES)}
    return out, meta, noise_files


def karlo_tokenizer_layout(source, folder):
    """The tokenizer folder as Karlo publishes it (vocab.json, merges.txt, special_tokens_map.json,
    tokenizer_config.json) instead of transformers 5's tokenizer.json."""
    config = json.loads(open(os.path.join(folder, "tokenizer_config.json")).read())
    os.remove(os.path.join(folder, "tokenizer.json"))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(os.path.join(source, name), os.path.join(folder, name))
    special = {k: config[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token")}
    with open(os.path.join(folder, "special_tokens_map.json"), "w") as f:
        json.dump(special, f, indent=2, sort_keys=True)
    CLIPTokenizer.from_pretrained(folder)  # still loads


def check_converter(pipe, variation, pipeline_dir, variation_dir, scratch, out_dir):
    """Round trip through tools/convert_unclip.py with --image-encoder (the text-to-image pipeline plus the
    variations pipeline's image encoder): every tensor of every part under its prefix with its
    name, shape and value (float32 and float16 bundles; the weights are float16-representable), every
    config verbatim, the tokenizer's merges; the same from `.bin` state dicts and from a tokenizer.json;
    the variations pipeline alone."""
    from safetensors import safe_open
    parts = {"text_encoder": pipe.text_encoder, "prior": pipe.prior, "text_proj": pipe.text_proj,
             "decoder": pipe.decoder, "super_res_first": pipe.super_res_first, "super_res_last": pipe.super_res_last,
             "image_encoder": variation.image_encoder}
    expected = {convert_unclip.PREFIXES[p] + k: v for p, m in parts.items() for k, v in m.state_dict().items()}
    merges_text = "".join(m + "\n" for m in MERGES).encode()

    def check(path, torch_dtype, folder):
        with safe_open(path, "pt") as f:
            meta = f.metadata()
            names = set(f.keys())
            assert names == set(expected) | {"tokenizer.merges"}, sorted(names ^ (set(expected) | {"tokenizer.merges"}))[:5]
            for k, v in expected.items():
                t = f.get_tensor(k)
                assert t.shape == v.shape and t.dtype == torch_dtype, (k, t.shape, t.dtype)
                assert torch.equal(t.float(), v.float()), k
            assert bytes(f.get_tensor("tokenizer.merges").numpy().tobytes()) == merges_text
        assert meta["components"] == "unclip,tokenizer" and meta["format"] == "libdalle"
        assert meta["unclip.parts"] == ",".join(parts) and meta["tokenizer.kind"] == "clip-bpe"
        assert int(meta["tokenizer.vocab_size"]) == len(pipe.tokenizer.get_vocab())
        for p in parts:
            source = variation_dir if p == "image_encoder" else folder
            assert meta[f"unclip.{p}.config"] == open(os.path.join(source, p, "config.json")).read(), p
        assert meta["unclip.feature_extractor.config"] == open(
            os.path.join(variation_dir, "feature_extractor", "preprocessor_config.json")).read()
        for name in ("prior_scheduler", "decoder_scheduler", "super_res_scheduler"):
            assert meta[f"unclip.{name}.config"] == open(os.path.join(folder, name, "scheduler_config.json")).read()
        assert meta["unclip.pipeline"] == open(os.path.join(folder, "model_index.json")).read()
        return len(expected)

    for dtype, torch_dtype in (("f32", torch.float32), ("f16", torch.float16), ("bf16", torch.bfloat16)):
        path = os.path.join(scratch, f"unclip_{dtype}.safetensors")
        subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_unclip.py"), pipeline_dir, path,
                        "--dtype", dtype, "--image-encoder", variation_dir], check=True, stdout=subprocess.DEVNULL)
        if dtype != "bf16":  # the weights are float16-, not bfloat16-representable
            n = check(path, torch_dtype, pipeline_dir)
        if dtype == "f16":
            with safe_open(path, "pt") as f:
                write_safetensors(os.path.join(out_dir, "bundle_metadata.safetensors"), {}, f.metadata())
                write_safetensors(os.path.join(out_dir, "tiny_unclip_f16.safetensors"),
                                  {k: f.get_tensor(k) for k in f.keys()}, f.metadata())
            check(os.path.join(out_dir, "tiny_unclip_f16.safetensors"), torch.float16, pipeline_dir)
    # The same pipeline with pickled state dicts, as older diffusers releases saved them.
    bin_dir = os.path.join(scratch, "pipeline_bin")
    shutil.copytree(pipeline_dir, bin_dir)
    for p in parts:
        folder = os.path.join(bin_dir, p)
        if p == "image_encoder":  # read from the variations folder
            continue
        for name in os.listdir(folder):
            if name.endswith(".safetensors"):
                from safetensors.torch import load_file
                torch.save(load_file(os.path.join(folder, name)), os.path.join(folder, name[:-12] + ".bin"))
                os.remove(os.path.join(folder, name))
    path = os.path.join(scratch, "unclip_bin.safetensors")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_unclip.py"), bin_dir, path, "--dtype", "f32",
                    "--image-encoder", variation_dir], check=True, stdout=subprocess.DEVNULL)
    check(path, torch.float32, bin_dir)
    # The variations pipeline alone (Karlo's image-variations folder): no prior; its metadata kept for the Swift tests.
    path = os.path.join(scratch, "variation_f16.safetensors")
    subprocess.run([sys.executable, os.path.join(ROOT, "tools", "convert_unclip.py"), variation_dir, path],
                   check=True, stdout=subprocess.DEVNULL)
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        assert meta["unclip.pipeline_class"] == "UnCLIPImageVariationPipeline"
        assert meta["unclip.parts"] == "text_encoder,text_proj,decoder,super_res_first,super_res_last,image_encoder"
        assert not any(k.startswith("unclip.prior.") for k in f.keys())
        write_safetensors(os.path.join(out_dir, "bundle_metadata_variation.safetensors"), {}, meta)
    # A tokenizer saved as transformers 5 does (tokenizer.json only) gives the same merges.
    fast = os.path.join(scratch, "tokenizer_fast")
    pipe.tokenizer.save_pretrained(fast)
    assert convert_unclip.read_tokenizer(fast)[0] == convert_unclip.read_tokenizer(os.path.join(pipeline_dir, "tokenizer"))[0]
    # Bad folders are errors that say what is wrong.
    def expect_error(fragment, edit):
        bad = os.path.join(scratch, "pipeline_bad")
        shutil.rmtree(bad, ignore_errors=True)
        shutil.copytree(pipeline_dir, bad)
        edit(bad)
        try:
            convert_unclip.read_pipeline(bad)
        except convert_unclip.ConversionError as e:
            assert fragment in str(e), (fragment, str(e))
            return
        raise AssertionError(f"no error for {fragment}")

    def swap_vocab(folder):
        path = os.path.join(folder, "tokenizer", "vocab.json")
        vocab = json.load(open(path))
        vocab["a"], vocab["b"] = vocab["b"], vocab["a"]
        json.dump(vocab, open(path, "w"))

    def set_scheduler(folder):
        path = os.path.join(folder, "decoder_scheduler", "scheduler_config.json")
        config = json.load(open(path))
        config["beta_schedule"] = "linear"
        json.dump(config, open(path, "w"))

    expect_error("vocabulary id", swap_vocab)
    expect_error("lacks decoder", lambda f: shutil.rmtree(os.path.join(f, "decoder")))
    expect_error("no state dict", lambda f: os.remove(os.path.join(f, "prior", "diffusion_pytorch_model.safetensors")))
    expect_error("beta_schedule", set_scheduler)
    try:
        convert_unclip.add_image_encoder(convert_unclip.read_pipeline(pipeline_dir), pipeline_dir)
        raise AssertionError("no error for --image-encoder without an image encoder")
    except convert_unclip.ConversionError as e:
        assert "image-variations pipeline" in str(e), str(e)
    print(f"converter round trip: {n} tensors in f32 / f16 (bf16 written), from .safetensors and .bin; "
          "configs verbatim; tokenizer from vocab.json + merges.txt and from tokenizer.json")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pipeline-dir", help="write the tiny pipeline here (kept); default a temporary folder")
    parser.add_argument("--out", default=OUT, help="fixture folder (default %(default)s)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    scratch = tempfile.mkdtemp(prefix="unclip_golden_")
    try:
        pipeline_dir = args.pipeline_dir or os.path.join(scratch, "pipeline")
        pipe = build_pipeline(os.path.join(scratch, "tokenizer"))
        pipe.set_progress_bar_config(disable=True)
        pipe.save_pretrained(pipeline_dir, safe_serialization=True)
        karlo_tokenizer_layout(os.path.join(scratch, "tokenizer"), os.path.join(pipeline_dir, "tokenizer"))
        os.makedirs(args.out, exist_ok=True)
        with torch.no_grad():
            fixtures = {"schedulers": scheduler_fixtures(), "ops": (ops_fixtures(), {}),
                        "modules": (module_fixtures(pipe), {}), "chain": chain_fixture(pipe)}
        variation = build_variation_pipeline(pipe)
        variation.set_progress_bar_config(disable=True)
        variation_dir = os.path.join(scratch, "variation")
        variation.save_pretrained(variation_dir, safe_serialization=True)
        karlo_tokenizer_layout(os.path.join(scratch, "tokenizer"), os.path.join(variation_dir, "tokenizer"))
        with torch.no_grad():
            tensors, meta, noise_files = variation_fixtures(pipe, variation)
        fixtures["variation"] = (tensors, meta)
        fixtures.update({name: (noise, {}) for name, noise in noise_files.items()})
        Image.fromarray(tensors["input_image"].numpy()).save(os.path.join(args.out, "variation_input.png"))
        chain = fixtures["chain"][0]
        first = {f"{stage}_latents": chain[f"{stage}_latents"][0:1] for stage in ("prior", "decoder", "super_res")}
        first.update({f"{stage}_step_noise": chain[f"{stage}_step_noise"][:, 0:1] for stage in ("prior", "decoder", "super_res")})
        fixtures["noise_one_image"] = (first, {"prompt": PROMPTS[0]})
        for name, (tensors, meta) in fixtures.items():
            meta = {"source": "tools/make_golden_unclip.py", **meta}
            path = os.path.join(args.out, name + ".safetensors")
            write_safetensors(path, tensors, meta)
            print(f"wrote {os.path.relpath(path, ROOT)}: {len(tensors)} tensors, {os.path.getsize(path)} bytes")
        check_converter(pipe, variation, pipeline_dir, variation_dir, scratch, args.out)
        if args.pipeline_dir:
            print(f"tiny pipeline kept in {pipeline_dir}")
    finally:
        shutil.rmtree(scratch)


if __name__ == "__main__":
    main()
