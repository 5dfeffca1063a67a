"""The Shapes World evaluation through the Python binding (Context.shapes_eval) on a tiny
four-component 64x64 bundle written by tests/make_eval_bundle.py."""

import os
import re
import subprocess
import sys

import numpy as np
import pytest

import dalle
from dalle import _lib

from conftest import REPO

sys.path.insert(0, os.path.join(REPO, "tools", "experiments"))
from candidate_reasons import read_candidate_set  # noqa: E402  (the tool's reader of candidate sets)

SMALL = dict(candidates=2, seed=5, per_template=2, per_held_out_pair=1, reconstruction_samples=3)
GROUPS = ["one object", "counting", "relation", "held-out pairs", "all captions"]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("eval") / "eval.safetensors")
    subprocess.run([sys.executable, os.path.join(REPO, "tests", "make_eval_bundle.py"), path], check=True)
    return path


def test_report_counts_rates_and_thread_independence(bundle):
    with dalle.Model(bundle) as model:
        with dalle.Context(model, threads=1) as one, dalle.Context(model, threads=2) as two:
            steps = []
            report = one.shapes_eval(progress=lambda phase, step, total: steps.append((phase, step, total)), **SMALL)
            assert two.shapes_eval(**SMALL) == report
            weighted = one.shapes_eval(likelihood_weight=1e4, **SMALL)  # only CLIP's pick may change
    assert report["has_clip"] is True
    assert [report[g]["captions"] for g in GROUPS] == [2, 2, 2, 3, 9]
    assert report["all captions"]["candidates"] == 18
    assert report["reconstruction"]["images"] == 3 + 9
    for g in GROUPS:
        r = report[g]
        assert r["passed_best_by_clip"] <= r["passed_any"] <= r["captions"]
        assert r["average"] == r["passed_candidates"] / r["candidates"] <= r["any_of_n"]
        assert r["rerank_lift"] == pytest.approx(r["best_by_clip"] - r["average"])
    assert 0 <= report["reconstruction"]["rate"] <= 1
    for g in GROUPS:
        assert [weighted[g][k] for k in ("captions", "passed_candidates", "passed_any")] == \
            [report[g][k] for k in ("captions", "passed_candidates", "passed_any")]
    assert steps == [(_lib.DALLE_PHASE_EVAL, s, 2 * 9 + 3) for s in range(2 * 9 + 3 + 1)]


def test_without_candidates_only_the_reconstructions(bundle):
    with dalle.Model(bundle) as model, dalle.Context(model) as ctx:
        full = ctx.shapes_eval(**SMALL)
        steps = []
        alone = ctx.shapes_eval(**dict(SMALL, candidates=0), progress=lambda phase, step, total: steps.append(total))
    assert alone["reconstruction"] == full["reconstruction"]
    assert alone["has_clip"] is False
    assert [alone[g]["captions"] for g in GROUPS] == [0] * 5
    assert alone["all captions"]["average"] is None
    assert set(steps) == {9 + 3}


def test_errors_and_cancel(bundle):
    with dalle.Model(bundle) as model, dalle.Context(model) as ctx:
        with pytest.raises(dalle.InvalidArgumentError, match="candidates is 1000"):
            ctx.shapes_eval(candidates=1000)
        with pytest.raises(dalle.CancelledError):
            ctx.shapes_eval(progress=lambda phase, step, total: step < 2, **SMALL)
        assert ctx.shapes_eval(**SMALL)["all captions"]["captions"] == 9
        with pytest.raises(dalle.InvalidArgumentError, match="likelihood_weight is -1.0"):
            ctx.shapes_eval(likelihood_weight=-1, **SMALL)
    generate_bundle = os.path.join(REPO, "Tests", "DalleCoreTests", "Golden", "generate", "model.safetensors")
    with dalle.Model(generate_bundle) as model, dalle.Context(model) as ctx:
        with pytest.raises(dalle.UnsupportedError, match="judges 64x64 images"):
            ctx.shapes_eval(**SMALL)


def test_dvae_reconstruction_tool_counts_what_the_judge_passes():
    shipped = os.path.join(REPO, "models", "shapes-world.safetensors")
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "bindings", "python"))
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "experiments", "dvae_reconstruction.py"), shipped,
                             "--count", "12", "--stream", "7", "--threads", "1"],
                            capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr
    passed, count, codes = map(int, re.search(r": (\d+)/(\d+) reconstructions pass .*?(\d+) codes used", result.stdout).groups())
    samples = [dalle.shapes_training_sample(7, i) for i in range(12)]
    with dalle.Model(shipped) as model, dalle.Context(model, threads=2) as ctx:
        tokens = ctx.encode(np.stack([image for _, image in samples]))
        decoded = ctx.decode(tokens)
    assert count == 12
    assert passed == sum(dalle.shapes_judge(image, caption)[0] for image, (caption, _) in zip(decoded, samples))
    assert codes == len(np.unique(tokens))


def test_candidate_set_is_judged_and_trains_clip(bundle, tmp_path):
    """Context.shapes_candidates: the training stream's captions, every candidate with the judge's
    verdict, the same file for any thread count; CLIP trains on it; bad input and cancel."""
    with dalle.Model(bundle) as model:
        with dalle.Context(model, threads=1) as one, dalle.Context(model, threads=2) as two:
            steps = []
            one.shapes_candidates(tmp_path / "a.safetensors", 3, candidates=2, seed=4,
                                  progress=lambda phase, step, total: steps.append((phase, step, total)))
            two.shapes_candidates(tmp_path / "b.safetensors", 3, candidates=2, seed=4)
            with pytest.raises(dalle.InvalidArgumentError, match="captions is 0"):
                one.shapes_candidates(tmp_path / "c.safetensors", 0)
            with pytest.raises(dalle.CancelledError):
                one.shapes_candidates(tmp_path / "c.safetensors", 3, progress=lambda phase, step, total: step < 1)
    assert steps == [(_lib.DALLE_PHASE_EVAL, s, 3) for s in range(4)]
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    captions, tensors = read_candidate_set(str(tmp_path / "a.safetensors"))
    assert captions == [dalle.shapes_training_sample(4, i)[0] for i in range(3)]
    assert tensors["candidates"].shape == (3, 2, 64, 64, 3) and tensors["references"].shape == (3, 64, 64, 3)
    for caption, images, verdicts in zip(captions, tensors["candidates"], tensors["passed"]):
        assert [int(dalle.shapes_judge(image, caption)[0]) for image in images] == list(verdicts)
    clip = dalle.train("clip", str(tmp_path / "a.safetensors"), tmp_path / "clip.st", tokenizer=bundle, init=bundle,
                       steps=2, batch_size=2)
    assert os.path.exists(clip)

    # tools/experiments/candidate_reasons.py counts the same captions and failing candidates, by the judge's reasons.
    env = dict(os.environ, PYTHONPATH=os.path.join(REPO, "bindings", "python"))
    result = subprocess.run([sys.executable, os.path.join(REPO, "tools", "experiments", "candidate_reasons.py"), str(tmp_path / "a.safetensors")],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    groups = re.findall(r"^[a-z ]+: (\d+) captions, .* of (\d+) candidates pass", result.stdout, re.M)
    assert sum(int(c) for c, _ in groups) == 3 and sum(int(k) for _, k in groups) == 6
    failing = sum(int(line.split()[0]) for line in result.stdout.splitlines() if line.startswith("  "))
    assert failing == int((tensors["passed"] == 0).sum())
