"""The binding's CLIP calls against the tiny golden bundle (tools/make_golden_clip.py)."""
import os

import numpy as np
import pytest

import dalle
from conftest import MODEL, REPO

CLIP_MODEL = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "clip", "clip_tiny.safetensors")


def images():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, size=shape, dtype=np.uint8) for shape in [(40, 60, 3), (32, 32, 4), (100, 33, 3)]]


@pytest.fixture(scope="module")
def ctx():
    with dalle.Model(CLIP_MODEL) as model, dalle.Context(model, threads=1) as c:
        yield c


def test_rerank_agrees_with_embeddings(ctx):
    scores, order = ctx.rerank("a photo of a cat", images())
    text = ctx.clip_encode_text("a photo of a cat")
    emb = ctx.clip_encode_images(images())
    assert emb.shape == (3, ctx.clip_embedding_size()) == (3, 32)
    cos = emb @ text / (np.linalg.norm(emb, axis=1) * np.linalg.norm(text))
    np.testing.assert_allclose(scores, cos * scores[0] / cos[0], rtol=1e-4)
    assert order == sorted(range(3), key=lambda i: -scores[i])


def test_thread_count_does_not_change_scores(ctx):
    with dalle.Context(ctx.model, threads=3) as other:
        assert list(other.rerank("stripes", images())[0]) == list(ctx.rerank("stripes", images())[0])


def test_bad_input(ctx):
    for prompt, imgs, fragment in [("", images(), "prompt is empty"), (None, images(), "prompt is NULL"),
                                   ("x", [], "n_images is 0")]:
        with pytest.raises(dalle.InvalidArgumentError, match=fragment):
            ctx.rerank(prompt, imgs)
    with pytest.raises(dalle.InvalidArgumentError, match="channels"):
        ctx.rerank("x", [np.zeros((8, 8, 2), dtype=np.uint8)])


def test_model_without_clip():
    with dalle.Model(MODEL) as model, dalle.Context(model) as c:
        with pytest.raises(dalle.UnsupportedError, match="no clip component"):
            c.rerank("a cat", images())
