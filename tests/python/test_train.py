"""Training through the Python binding: a tiny model trained stage by stage, bundled, loaded and
used; progress, stopping and resuming; errors carrying the library's message."""

import ctypes

import numpy as np
import pytest

import dalle
from dalle import _lib

TINY_DVAE = dict(image_size=16, group_count=2, n_hid=8, n_blk_per_group=1, vocab_size=16, n_init=8)
TINY_TRANSFORMER = dict(dim=16, depth=1, heads=2, dim_head=8, text_seq_len=12)
TINY_CLIP = dict(embed_dim=8, image_resolution=16, vision_patch_size=8, vision_width=16, vision_layers=1,
                 vision_heads=2, context_length=16, transformer_width=16, transformer_layers=1, transformer_heads=2)


def test_train_every_stage_bundle_and_generate(tmp_path):
    tok = dalle.train("tokenizer", "shapes", tmp_path / "tok.st", vocab_size=540)
    seen = []
    dvae = dalle.train("dvae", "shapes", tmp_path / "dvae.st", config=TINY_DVAE, steps=4, batch_size=4,
                       checkpoint_every=2, validation_count=4,
                       progress=lambda step, total, loss, val: seen.append((step, total, loss, val)) or True)
    assert [s[0] for s in seen] == [1, 2, 3, 4] and all(s[1] == 4 for s in seen)
    assert seen[-1][3] == seen[-1][3]  # a validation loss (not NaN) at the end
    tr = dalle.train("transformer", "shapes", tmp_path / "tr.st", tokenizer=tok, dvae=dvae, config=TINY_TRANSFORMER,
                     steps=2, batch_size=2)
    clip = dalle.train("clip", "shapes", tmp_path / "clip.st", tokenizer=tok, config=TINY_CLIP, steps=2, batch_size=4)
    out = dalle.bundle([tok, dvae, tr, clip], tmp_path / "tiny.st")
    with dalle.Model(str(out)) as model, dalle.Context(model) as ctx:
        assert model.cond_scale == 1
        images = ctx.generate("a red circle", count=2, seed=1)
        assert images.images.shape == (2, 16, 16, 3)
    guided = dalle.bundle([tok, dvae, tr, clip], tmp_path / "guided.st", dtype="f32", cond_scale=2.5)
    with dalle.Model(str(guided)) as model:
        assert model.cond_scale == 2.5 and model.likelihood_weight == 0
    assert (tmp_path / "guided.st").stat().st_size > out.stat().st_size  # 32-bit weights
    # keep_best ranks by CLIP score + likelihood_weight x log-likelihood; the bundle records a default weight.
    weighted = dalle.bundle([out], tmp_path / "weighted.st", likelihood_weight=1e4)
    with dalle.Model(str(out)) as model, dalle.Context(model) as ctx:
        by_clip = ctx.generate("a red circle", count=6, seed=3, temperature=1.5, keep_best=6)
        by_likelihood = ctx.generate("a red circle", count=6, seed=3, temperature=1.5, keep_best=6, likelihood_weight=1e4)
    assert by_clip.scores == sorted(by_clip.scores, reverse=True)
    assert list(by_likelihood.log_likelihoods) == sorted(by_clip.log_likelihoods, reverse=True)
    assert list(by_clip.log_likelihoods) != list(by_likelihood.log_likelihoods)  # the weight changed the order
    with dalle.Model(str(weighted)) as model, dalle.Context(model) as ctx:
        assert model.likelihood_weight == 1e4 and model.cond_scale == 1
        default = ctx.generate("a red circle", count=6, seed=3, temperature=1.5, keep_best=6)
        assert np.array_equal(default.tokens, by_likelihood.tokens)
        with pytest.raises(dalle.InvalidArgumentError, match="likelihood_weight is -1.0"):
            ctx.generate("a red circle", count=2, keep_best=1, likelihood_weight=-1)


def test_stop_and_resume(tmp_path):
    path = tmp_path / "dvae.st"
    with pytest.raises(dalle.CancelledError):
        dalle.train("dvae", "shapes", path, config=TINY_DVAE, steps=6, batch_size=2, validation_count=2,
                    progress=lambda step, total, loss, val: step < 2)
    steps = []
    dalle.train("dvae", "shapes", path, steps=6, batch_size=2, validation_count=2,
                progress=lambda step, total, loss, val: steps.append(step) or True)
    assert steps == [3, 4, 5, 6]


def test_dvae_schedule_reaches_the_trainer(tmp_path):
    lines = []
    dalle.set_log_callback(lambda level, text: lines.append(text))
    dalle.set_log_level(dalle._lib.DALLE_LOG_INFO)
    try:
        dalle.train("dvae", "shapes", tmp_path / "dvae.st", config=TINY_DVAE, steps=2, batch_size=2, validation_count=2,
                    dvae_schedule={"kmeans": 3, "usage": 1, "anneal": 1})
    finally:
        dalle.set_log_level(dalle._lib.DALLE_LOG_WARN)
        dalle.set_log_callback(None)
    assert any("codebook seeded by k-means over the cells of 3 training images" in line for line in lines), lines
    with pytest.raises(dalle.InvalidArgumentError, match="unknown dVAE schedule setting 'bogus'"):
        dalle.train("dvae", "shapes", tmp_path / "x.st", config=TINY_DVAE, steps=1, dvae_schedule={"bogus": 1})
    with pytest.raises(dalle.InvalidArgumentError, match="numbers ≥ 0"):
        dalle.train("dvae", "shapes", tmp_path / "y.st", config=TINY_DVAE, steps=1, dvae_schedule={"usage": -1})


def test_shapes_template_weights(tmp_path):
    dvae = dalle.train("dvae", "shapes:0,1,0", tmp_path / "dvae.st", config=TINY_DVAE, steps=1, batch_size=2,
                       validation_count=2)
    assert dvae.exists()
    with pytest.raises(dalle.InvalidArgumentError, match="':SINGLE,COUNTING,RELATION'"):
        dalle.train("dvae", "shapes:1,2", tmp_path / "x.st", config=TINY_DVAE, steps=1)
    with pytest.raises(dalle.InvalidArgumentError, match="positive sum"):
        dalle.train("dvae", "shapes-defects:0,0,0", tmp_path / "y.st", config=TINY_DVAE, steps=1)


def test_older_train_params_without_dvae_schedule(tmp_path):
    """A caller built against the header before dvae_schedule passes a smaller struct_size: the
    library reads only the fields that caller knows, so a bogus value past its end is never seen."""
    p = _lib.lib.dalle_train_default_params()
    p.stage, p.data, p.out_path = b"dvae", b"shapes", str(tmp_path / "old.st").encode()
    p.config = ",".join(f"{k}={v}" for k, v in TINY_DVAE.items()).encode()
    p.steps, p.batch_size, p.validation_count = 1, 2, 2
    p.dvae_schedule = b"bogus=1"
    p.struct_size = _lib.dalle_train_params.dvae_schedule.offset
    assert _lib.lib.dalle_train(ctypes.byref(p)) == 0, _lib.lib.dalle_last_error()
    assert (tmp_path / "old.st").exists()
    p.struct_size, p.out_path = ctypes.sizeof(_lib.dalle_train_params), str(tmp_path / "new.st").encode()
    assert _lib.lib.dalle_train(ctypes.byref(p)) != 0
    assert b"unknown dVAE schedule setting 'bogus'" in _lib.lib.dalle_last_error()


TEXT_TOWER = ["clip.token_embedding", "clip.positional_embedding", "clip.transformer.", "clip.ln_final", "clip.text_projection"]


def test_init_and_freeze_reach_the_trainer(tmp_path):
    """A run started from another's weights with CLIP's text tower frozen: the text embeddings stay
    exactly, the image embeddings move."""
    np = pytest.importorskip("numpy")
    tok = dalle.train("tokenizer", "shapes", tmp_path / "tok.st", vocab_size=540)
    first = dalle.train("clip", "shapes", tmp_path / "a.st", tokenizer=tok, config=TINY_CLIP, steps=2, batch_size=4)
    second = dalle.train("clip", "shapes-near-misses", tmp_path / "b.st", tokenizer=tok, init=first, freeze=TEXT_TOWER,
                         steps=3, batch_size=4, learning_rate=1e-2)
    image = np.full((16, 16, 3), 200, dtype=np.uint8)
    image[4:12, 2:8] = (255, 0, 0)
    embeddings = []
    for part in (first, second):
        with dalle.Model(str(dalle.bundle([tok, part], tmp_path / "m.st"))) as model, dalle.Context(model) as ctx:
            embeddings.append((ctx.clip_encode_text("a red square"), ctx.clip_encode_images([image])))
    assert np.array_equal(embeddings[0][0], embeddings[1][0])
    assert not np.allclose(embeddings[0][1], embeddings[1][1])
    with pytest.raises(dalle.InvalidArgumentError, match="no parameter of the clip starts with 'clip.text.'"):
        dalle.train("clip", "shapes", tmp_path / "c.st", tokenizer=tok, config=TINY_CLIP, steps=1, freeze=["clip.text."])


def test_errors(tmp_path):
    with pytest.raises(dalle.InvalidArgumentError, match="unknown training stage"):
        dalle.train("vqgan", "shapes", tmp_path / "x.st")
    with pytest.raises(dalle.InvalidArgumentError, match="needs a tokenizer"):
        dalle.train("transformer", "shapes", tmp_path / "x.st")
    with pytest.raises(dalle.DalleError, match="training folder"):
        dalle.train("dvae", str(tmp_path / "missing"), tmp_path / "x.st")
    with pytest.raises(dalle.DalleError):
        dalle.bundle([str(tmp_path / "missing.st")], tmp_path / "out.st")
    tok = dalle.train("tokenizer", "shapes", tmp_path / "tok.st", vocab_size=540)
    with pytest.raises(dalle.InvalidArgumentError, match=r"caption dropout must be in \[0, 1\), got 1.5"):
        dalle.train("transformer", "shapes", tmp_path / "x.st", tokenizer=tok, caption_dropout=1.5)
    with pytest.raises(dalle.InvalidArgumentError, match="caption dropout is for the transformer stage"):
        dalle.train("clip", "shapes", tmp_path / "x.st", tokenizer=tok, caption_dropout=0.2)
    with pytest.raises(dalle.InvalidArgumentError, match=r"caption negatives must be in 0...8, got -1"):
        dalle.train("clip", "shapes", tmp_path / "x.st", tokenizer=tok, caption_negatives=-1)
    with pytest.raises(dalle.InvalidArgumentError, match="caption negatives are for the clip stage"):
        dalle.train("dvae", "shapes", tmp_path / "x.st", caption_negatives=2)
    with pytest.raises(dalle.InvalidArgumentError, match="guidance scale needs a transformer"):
        dalle.bundle([tok], tmp_path / "out.st", cond_scale=2)
    with pytest.raises(dalle.InvalidArgumentError, match="likelihood weight needs a transformer"):
        dalle.bundle([tok], tmp_path / "out.st", likelihood_weight=2)
    with pytest.raises(ValueError, match="dtype"):
        dalle.bundle([tok], tmp_path / "out.st", dtype="f8")
