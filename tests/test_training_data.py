"""training/data.py: the judge's pairs — positives hold the answer, negatives do not, held-out text never enters."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from conftest import run_python

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "training"))

import data  # noqa: E402  (training/data.py)

CONTEXT = "广茂铁路是中国广东省的一条铁路。全长364.6公里，由广州至茂名。广三铁路在1903年建成。"


def _article(ids: list[str]) -> dict:
    paragraphs = []
    for pid in ids:
        paragraphs.append(
            {
                "id": pid,
                "context": CONTEXT,
                "qas": [
                    {
                        "id": f"{pid}_Q0",
                        "question": "广茂铁路全长多少公里？",
                        "answers": [{"text": "364.6公里", "answer_start": CONTEXT.index("364.6公里")}],
                    }
                ],
            }
        )
    return {"title": "广茂铁路", "paragraphs": paragraphs}


def _pool(articles: list[tuple[str, list[dict]]]) -> data.Pool:
    sentences = []
    for n, (title, paragraphs) in enumerate(articles):
        for i, p in enumerate(paragraphs):
            spans = data._sentences(p["context"])
            for j, (s, e) in enumerate(spans):
                before = p["context"][spans[j - 1][0] : spans[j - 1][1]] if j else ""
                sentences.append((p["context"][s:e], before, title, f"a{n}/{i}"))
    return data.Pool.of(sentences)


def test_the_positive_holds_the_answer_and_no_negative_does():
    title, paragraphs = "广茂铁路", _article(["DEV_1"])["paragraphs"]
    other = (
        "广三铁路",
        [{"id": "DEV_2", "context": "广三铁路全长49公里，由广州至三水。茂名是广东的城市。", "qas": []}],
    )
    filler = [(f"条目{n}", [{"id": f"F{n}", "context": f"第{n}号条目讲的是别的事情。", "qas": []}]) for n in range(30)]
    pool = _pool([(title, paragraphs), other, *filler])
    pairs = list(data.pairs_of(title, paragraphs, pool, random.Random(1), "a0"))
    positives = [p for p in pairs if p.label == 1]
    assert [p.sentence for p in positives] == ["全长364.6公里，由广州至茂名。"]
    assert all("364.6" not in p.sentence for p in pairs if p.label == 0)
    kinds = {p.kind for p in pairs if p.label == 0}
    assert kinds == {"hard", "near", "heading"}
    near = [p.sentence for p in pairs if p.kind == "near"]
    assert near and all("广三铁路" in s or "茂名" in s for s in near)  # from the other paragraph only
    assert next(p.sentence for p in pairs if p.kind == "heading").count("广茂铁路全长") == 1


def test_a_heading_restates_the_question_without_asking():
    assert data.heading_of("广茂铁路全长多少公里？") == "广茂铁路全长公里"
    assert data.heading_of("纪委书记由谁选举产生？") == "纪委书记由谁选举产生"


def test_held_out_paragraphs_and_drcd_articles_are_left_out(tmp_path):
    raw = tmp_path / "raw.json"
    cmrc = _article(["DEV_1", "DEV_2"])
    drcd = _article(["7-1", "7-2"])
    raw.write_text(json.dumps({"data": [cmrc, drcd]}, ensure_ascii=False), encoding="utf-8")
    kept = list(data.articles(raw, held={"DEV_2", "7-2"}))
    assert [[p["id"] for p in paragraphs] for _, paragraphs in kept] == [["DEV_1"]]  # DRCD's whole article goes


def test_the_shared_benchmark_questions_are_held_out():
    held = data.held_out_passages()
    first = json.loads((data.BENCH / "cmrc2018_dev" / "queries.jsonl").read_text(encoding="utf-8").splitlines()[0])
    assert first["gold_ids"][0].split("-dev-", 1)[1] in held
    assert any(h.count("-") == 1 for h in held)  # DRCD paragraphs (`1147-5`) too


def test_near_topic_negatives_do_not_depend_on_the_hash_seed():
    """Tied sentences come in one order whatever PYTHONHASHSEED is, so the pairs file (and its sha256 in the
    judge's manifest) is reproduced by rerunning the script."""
    script = (
        "import sys; sys.path.insert(0, 'training'); import data\n"
        "sentences = [(pair, '', 't', f'p{i}') for i, pair in enumerate(['甲乙', '丙丁', '戊己', '庚辛', '壬癸'])]\n"
        "sentences += [(f'别的条目{n}', '', 'f', f'f{n}') for n in range(40)]\n"
        "print(data.Pool.of(sentences).nearest('甲乙丙丁戊己庚辛壬癸', 'none', '答', 2))\n"
    )
    runs = {run_python(script, PYTHONHASHSEED=str(seed)) for seed in (1, 2, 3, 4)}
    assert len(runs) == 1, runs
    assert runs.pop().strip() == "[0, 1]"  # five tie, one rare bigram each: the first two
