"""The near-miss sets of `benchmarks/near_miss.py`: what is removed, what is dropped, what stays answerable."""

import importlib.util
import json
import sys

from conftest import ROOT

from rag.text.normalize import to_simplified


def _near_miss():
    spec = importlib.util.spec_from_file_location("near_miss", ROOT / "benchmarks" / "near_miss.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["near_miss"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def test_a_near_miss_loses_its_gold_passage_and_its_answer_but_keeps_its_article():
    near_miss = _near_miss()
    nms = near_miss.make("drcd_dev_simpq", sample=40, seed=7)
    assert nms == near_miss.make("drcd_dev_simpq", sample=40, seed=7)  # the same set for the same seed
    kept = {p["id"] for p in nms.corpus}
    text = "\n".join(to_simplified(p["text"]) for p in nms.corpus)
    full = [json.loads(line) for line in (near_miss.BENCH / "drcd_dev_simpq" / "corpus.jsonl").open(encoding="utf-8")]
    assert len(kept) == len(full) - nms.removed
    assert len(nms.near_misses) + nms.dropped == 40 and nms.near_misses
    articles = {near_miss.article(p["id"]) for p in nms.corpus}
    for question in nms.near_misses:
        assert not set(question["gold_ids"]) & kept
        assert not any(to_simplified(a) in text for a in question["answers"])
    assert any(near_miss.article(g) in articles for q in nms.near_misses for g in q["gold_ids"])  # near, not gone
    assert len(nms.answerable) == len(nms.near_misses)
    assert all(set(q["gold_ids"]) <= kept for q in nms.answerable)
    assert {q["id"] for q in nms.answerable}.isdisjoint(q["id"] for q in nms.near_misses)
