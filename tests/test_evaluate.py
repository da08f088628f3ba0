"""Question-set formats, gold matching and the metrics of `rag eval`."""

import json

from rag.evaluate import Gold, evaluate, load_questions, matching_form


def test_gold_matching_strips_pinyin_and_script():
    gold = Gold("002", ["派出监察办公室或监察专员"])
    assert gold.matches("002_x.txt", "普遍向鄉鎮(街道)派(pài)出監察辦公室或監察專員")
    assert not gold.matches("001_x.txt", "派出监察办公室或监察专员")
    assert matching_form("責(zé)任 清單") == "责任清单"


def test_both_question_formats_load(tmp_path):
    dev = tmp_path / "dev.jsonl"
    dev.write_text(
        json.dumps({"id": "d1", "question": "问?", "gold": [{"doc": "000", "any": ["甲"]}]}, ensure_ascii=False)
        + "\n"
        + json.dumps({"id": "d2", "question": "天气?", "gold": []}, ensure_ascii=False)
        + "\n",
        encoding="utf-8",
    )
    bench = tmp_path / "queries.jsonl"
    bench.write_text(
        json.dumps({"id": "q1", "question": "问?", "answers": ["乙"], "gold_ids": ["p-1"]}, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    d1, d2 = load_questions(dev)
    assert d1.answerable and not d2.answerable
    (q1,) = load_questions(bench)
    assert q1.hit("p-1", "含乙的段落") and not q1.hit("p-10", "含乙的段落")


def test_metrics_over_the_dev_set(engine, dev_questions, tmp_path):
    path = tmp_path / "dev.jsonl"
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in dev_questions), encoding="utf-8")
    report = evaluate(lambda q: engine.ask(q, k=10), load_questions(path))
    metrics = report.metrics()
    assert metrics["questions"] == len(dev_questions)
    assert metrics["hit@5"] == 1.0
    assert metrics["hit@1"] >= 0.9
    assert metrics["citation_hit"] >= 0.9
    assert metrics["abstention_recall"] == 1.0 and metrics["abstention_precision"] == 1.0
    assert metrics["latency_ms_p50"] <= metrics["latency_ms_p95"]
