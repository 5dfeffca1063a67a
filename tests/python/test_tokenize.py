"""dalle.Context.tokenize / Model.tokenize against the golden ids of CLIP and DALLE-pytorch."""
import json
import os

import pytest

import dalle
from conftest import MODEL, REPO

GOLDEN = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "tokenizer")


@pytest.fixture(scope="module")
def tokenizer_model():
    with dalle.Model(os.path.join(GOLDEN, "clip_bpe.safetensors")) as m:
        yield m


def test_tokenize_matches_golden(tokenizer_model):
    golden = json.load(open(os.path.join(GOLDEN, "golden.json")))
    assert tokenizer_model.components == ["tokenizer"]
    with dalle.Context(tokenizer_model, threads=1) as ctx:
        for i in range(0, len(golden["strings"]), 11):
            text = golden["strings"][i]
            if "\0" in text:
                continue
            ids, truncated = ctx.tokenize(text, "clip")
            assert ids == golden["clip"][i] + [0] * (77 - len(golden["clip"][i]))
            assert truncated == golden["clip_truncated"][i]
            ids, truncated = ctx.tokenize(text, "dalle")
            assert ids == golden["dalle"][i] + [0] * (256 - len(golden["dalle"][i]))
            assert truncated == golden["dalle_truncated"][i]
    assert tokenizer_model.tokenize("a red circle", "raw") == ([320, 736, 7117], False)
    assert tokenizer_model.tokenize("a red circle")[0][:5] == [49406, 320, 736, 7117, 49407]


def test_tokenize_errors(tokenizer_model):
    with pytest.raises(dalle.InvalidArgumentError, match="UTF-8"):
        tokenizer_model.tokenize(b"\xff\xfe")
    with pytest.raises(dalle.InvalidArgumentError, match="mode"):
        tokenizer_model.tokenize("a", "bpe")
    with dalle.Model(MODEL) as dvae_only:
        with pytest.raises(dalle.UnsupportedError, match="no tokenizer"):
            dvae_only.tokenize("a")
