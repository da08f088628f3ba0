"""rag/answer/judge.py: the shipped answer judge — what it was trained on, how it loads, what it says."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from conftest import run_python

from rag.answer.judge import FILES, Candidate, Judge
from rag.embedding.cross_encoder import CONFIG, WEIGHTS
from rag.embedding.embedder import default_model_folder


@pytest.fixture(scope="module")
def judge() -> Judge:
    judge = Judge(lambda: default_model_folder()[0])
    assert judge.wait(), judge.error
    return judge


def test_the_shipped_files_are_small_and_say_how_they_were_made():
    assert (FILES / WEIGHTS).stat().st_size <= 20 * 1024 * 1024
    manifest = json.loads((FILES / CONFIG).read_text(encoding="utf-8"))
    assert len(manifest["data"]["pairs_sha256"]) == 64
    assert set(manifest["data"]["sources_sha256"]) == {"cmrc2018_trial.json", "cmrc2018_dev.json", "DRCD_dev.json"}
    assert manifest["seed"] == 20261207
    assert manifest["validation"]["auc"] >= 0.9


def test_the_sentence_that_answers_outscores_its_neighbours(judge):
    question = "广茂铁路全长多少公里？"
    answers, lead, other = judge.probabilities(
        question,
        [
            Candidate("全长364.6公里，由广州至茂名。", "广茂铁路是中国广东省的一条铁路。", "广茂铁路"),
            Candidate("广茂铁路全长情况如下：", "", "广茂铁路"),
            Candidate("广三铁路在1903年建成。", "广三铁路是广东的另一条铁路。", "广三铁路"),
        ],
    )
    assert answers > 0.5 > max(lead, other)


def test_until_it_has_loaded_there_is_no_judgement():
    release = threading.Event()

    def slow_base() -> Path:
        release.wait(30)
        return default_model_folder()[0]

    judge = Judge(slow_base)
    assert judge.probabilities("问题", [Candidate("句子。")]) is None  # starts loading, does not wait
    assert not judge.ready
    release.set()
    assert judge.wait(60)
    assert judge.probabilities("问题", []) == []


def test_a_judge_that_cannot_load_says_why(tmp_path):
    judge = Judge(lambda: default_model_folder()[0], files=tmp_path)  # no trained files there
    assert not judge.wait(60)
    assert "judge.json" in judge.error or "No such file" in judge.error
    assert judge.probabilities("问题", [Candidate("句子。")]) is None


def test_judges_and_the_passage_model_load_side_by_side_in_a_fresh_process(tmp_path):
    """transformers' lazy imports fail when two threads run them at once (`cannot import name
    'AutoConfig'`): two judges and the passage model, loaded together from cold, all load."""
    import shutil

    copy = tmp_path / "judge_files"
    shutil.copytree(FILES, copy)
    code = (
        "import threading\n"
        "from pathlib import Path\n"
        "from rag.answer.judge import Judge\n"
        "from rag.embedding.embedder import default_model_folder, load_embedder\n"
        "base = lambda: default_model_folder()[0]\n"
        f"judges = [Judge(base), Judge(base, files=Path({str(copy)!r}))]\n"
        "embedder = load_embedder()\n"
        "passages = threading.Thread(target=lambda: embedder.encode_documents(['纪委监督责任。']))\n"
        "for judge in judges:\n"
        "    judge.start()\n"
        "passages.start()\n"
        "passages.join()\n"
        "print([judge.wait(120) for judge in judges], [judge.error for judge in judges])\n"
    )
    assert run_python(code).strip().splitlines()[-1] == "[True, True] ['', '']"
