"""rag/embedding/cross_encoder.py: the judge's network — its trained part saved and loaded back exactly."""

from __future__ import annotations

import pytest
import torch

from rag.embedding.cross_encoder import WEIGHTS, CrossEncoder, JudgeShape, candidate_text
from rag.embedding.embedder import default_model_folder


@pytest.fixture(scope="module")
def base():
    return default_model_folder()[0]


def test_the_candidate_is_read_sentence_first_then_its_place():
    assert (
        candidate_text(" 全长364.6公里。", "广茂铁路是一条铁路。", "广茂铁路")
        == "全长364.6公里。｜广茂铁路：广茂铁路是一条铁路。"
    )
    assert candidate_text("全长364.6公里。") == "全长364.6公里。"


def test_only_the_top_layers_and_the_head_are_trained(base):
    model = CrossEncoder(base, JudgeShape(layers=3, trained=1, max_length=32))
    names = set(model.trained_parameters())
    assert {"head.weight", "head.bias"} <= names
    assert all(n.startswith(("head.", "encoder.encoder.layer.2.")) for n in names)
    assert len(model.encoder.encoder.layer) == 3


def test_the_trained_part_round_trips(base, tmp_path):
    torch.manual_seed(0)
    model = CrossEncoder(base, JudgeShape(layers=2, trained=1, max_length=32)).eval()
    with torch.no_grad():
        for p in model.trained_parameters().values():
            p.add_(torch.randn_like(p) * 0.05)  # as if trained
    model.save_trained(tmp_path, {"seed": 0})
    again = CrossEncoder.load(base, tmp_path)
    inputs = model.batch(["广茂铁路全长多少公里？"], ["全长364.6公里。"])
    with torch.no_grad():
        assert torch.allclose(model(**inputs), again(**inputs), atol=2e-2)  # stored as float16
    assert again.shape == JudgeShape(layers=2, trained=1, max_length=32)


def test_a_file_without_the_trained_layers_is_refused(base, tmp_path):
    model = CrossEncoder(base, JudgeShape(layers=2, trained=1, max_length=32))
    model.save_trained(tmp_path, {})
    from safetensors.torch import load_file, save_file

    tensors = {k: v for k, v in load_file(str(tmp_path / WEIGHTS)).items() if k.startswith("head.")}
    save_file(tensors, str(tmp_path / WEIGHTS))
    with pytest.raises(ValueError, match="train_judge"):
        CrossEncoder.load(base, tmp_path)
