"""Training pairs for the answer judge: (question, candidate sentence in its context) → answers or not.

    python training/data.py --out training/work/pairs.jsonl

Sources (public, span-extraction reading comprehension; the answer's position is known):
- CMRC 2018 trial and dev (`ymcui/cmrc2018`, `squad-style-data/`, CC BY-SA 4.0);
- DRCD dev (`DRCKnowledgeTeam/DRCD`, `DRCD_dev.json`, CC BY-SA 3.0).

Held out, never trained on: every paragraph that a question of `../shared/bench/{cmrc2018_dev,drcd_dev,
drcd_dev_simpq}` was written on, and for DRCD the whole article of such a paragraph (the near-miss sets
keep an article's other paragraphs as near-topic candidates). DRCD's test split, CAIL 2019 and the
DataFountain policy QA are never read.

For each question: positives are the sentences (`rag.ingest.chunk.sentence_spans`) that hold the answer
span; negatives are the other sentences of its paragraph (hard), sentences of other paragraphs of its
article that share the most characters with the question (near-topic), and the question restated as a
heading or a lead-in (`一、加强…`, `…的问题`): text that is on topic and answers nothing. Everything is in
the product's matching script (Simplified), as the product reads it.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import math
import random
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from rag.ingest.chunk import sentence_spans  # noqa: E402
from rag.text.normalize import to_simplified  # noqa: E402

log = logging.getLogger("training.data")
RAW = ROOT / "training" / "raw"
BENCH = ROOT.parent / "shared" / "bench"
SOURCES = {
    "cmrc2018_trial.json": "https://raw.githubusercontent.com/ymcui/cmrc2018/master/squad-style-data/cmrc2018_trial.json",
    "cmrc2018_dev.json": "https://raw.githubusercontent.com/ymcui/cmrc2018/master/squad-style-data/cmrc2018_dev.json",
    "DRCD_dev.json": "https://raw.githubusercontent.com/DRCKnowledgeTeam/DRCD/master/DRCD_dev.json",
}
HELD_OUT = ("cmrc2018_dev", "drcd_dev", "drcd_dev_simpq")
SEED = 20261207
NEAR_TOPIC = 4
"""Negatives per question from other paragraphs (any article) sharing the most rare bigrams with it."""
HARD = 5
"""Negatives per question from its own paragraph."""
_ASKING = re.compile(
    r"[？?]|是什么|是谁|是哪[一个些年里]*|有哪些|有什么|为什么|为何|多少|几[个年次种]?|怎样|怎么|如何|何时|哪里|吗$"
)


@dataclass(frozen=True)
class Pair:
    """One training example: `label` 1 when `sentence` holds the answer to `question`."""

    question: str
    sentence: str
    before: str
    title: str
    label: int
    kind: str
    """pos | hard (same paragraph) | near (same article) | heading (the question restated)."""
    group: str
    """The question's id: pairs of one question stay in one split."""


def held_out_passages() -> set[str]:
    """Source paragraph ids (`DEV_12`, `1147-5`) of every shared benchmark question."""
    held: set[str] = set()
    for name in HELD_OUT:
        for line in (BENCH / name / "queries.jsonl").read_text(encoding="utf-8").splitlines():
            for gold in json.loads(line).get("gold_ids", []):
                held.add(gold.split("-dev-", 1)[1])
    return held


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def articles(path: Path, held: set[str]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """(title, paragraphs) of a SQuAD-style file, leaving out held-out paragraphs (and, for DRCD, their articles)."""
    for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
        paragraphs = article["paragraphs"]
        ids = [str(p.get("id", "")) for p in paragraphs]
        drcd = any(re.fullmatch(r"\d+-\d+", i) for i in ids)
        if drcd and any(i in held for i in ids):
            continue
        kept = [p for p, i in zip(paragraphs, ids, strict=True) if i not in held]
        if kept:
            yield to_simplified(article.get("title", "")), kept


def heading_of(question: str) -> str:
    """The question restated as a heading: the topic without the asking words."""
    core = _ASKING.sub("", question).strip("，。 ？?")
    return core


@dataclass
class Pool:
    """Every sentence of the kept articles with a bigram index: where near-topic negatives come from."""

    sentences: list[tuple[str, str, str, str]]  # (text, before, title, paragraph key)
    postings: dict[str, list[int]]

    @classmethod
    def of(cls, sentences: list[tuple[str, str, str, str]]) -> Pool:
        postings: dict[str, list[int]] = {}
        for i, (text, *_rest) in enumerate(sentences):
            for gram in {text[j : j + 2] for j in range(len(text) - 1)}:
                postings.setdefault(gram, []).append(i)
        return cls(sentences, postings)

    def nearest(self, question: str, paragraph: str, answer: str, n: int) -> list[int]:
        """The `n` sentences of other paragraphs sharing the most rare bigrams with `question`, none
        holding the answer."""
        total = len(self.sentences)
        scores: dict[int, float] = {}
        for gram in sorted({question[j : j + 2] for j in range(len(question) - 1)}):  # one order: one sum
            hits = self.postings.get(gram, [])
            if not hits or len(hits) > total // 10:
                continue
            weight = math.log(total / len(hits))
            for i in hits:
                scores[i] = scores.get(i, 0.0) + weight
        best = sorted(scores, key=lambda i: (-scores[i], i))  # ties by position, not by hash order
        picked = [i for i in best[: n * 4] if self.sentences[i][3] != paragraph and answer not in self.sentences[i][0]]
        return picked[:n]


def _sentences(text: str) -> list[tuple[int, int]]:
    return [(s.start, s.end) for s in sentence_spans(text)]


def pairs_of(title: str, paragraphs: list[dict[str, Any]], pool: Pool, rng: random.Random, key: str) -> Iterator[Pair]:
    """The pairs of one article's questions."""
    for index, paragraph in enumerate(paragraphs):
        text = paragraph["context"]
        spans = _sentences(text)
        simple = [
            (to_simplified(text[s:e]), to_simplified(text[spans[i - 1][0] : spans[i - 1][1]]) if i else "")
            for i, (s, e) in enumerate(spans)
        ]
        for qa in paragraph["qas"]:
            answers = [a for a in qa.get("answers", []) if a.get("text", "").strip()]
            if not answers or not spans:
                continue
            question = to_simplified(qa["question"]).strip()
            a_start = int(answers[0]["answer_start"])
            a_end = a_start + len(answers[0]["text"])
            positive = {i for i, (s, e) in enumerate(spans) if s < a_end and a_start < e}
            if not positive:
                continue
            group = str(qa.get("id", question))
            for i in sorted(positive):
                yield Pair(question, simple[i][0], simple[i][1], title, 1, "pos", group)
            others = [i for i in range(len(spans)) if i not in positive]
            for i in rng.sample(others, min(HARD, len(others))):
                yield Pair(question, simple[i][0], simple[i][1], title, 0, "hard", group)
            answer = to_simplified(answers[0]["text"])
            for i in pool.nearest(question, f"{key}/{index}", answer, NEAR_TOPIC):
                text_, before, title_, _ = pool.sentences[i]
                yield Pair(question, text_, before, title_, 0, "near", group)
            heading = heading_of(question)
            if len(heading) >= 4:
                lead = rng.choice([f"{heading}", f"一、{heading}", f"关于{heading}的问题", f"{heading}情况如下："])
                yield Pair(question, lead, "", title, 0, "heading", group)


def build(raw: Path = RAW, seed: int = SEED) -> tuple[list[Pair], dict[str, str]]:
    """Every pair from the raw files in `raw`, and each file's sha256."""
    held = held_out_passages()
    rng = random.Random(seed)
    checksums, kept = {}, []
    for name in SOURCES:
        path = raw / name
        if not path.exists():
            raise SystemExit(f"missing {path}: download it from {SOURCES[name]}")
        checksums[name] = sha256(path)
        kept.extend((f"{name}/{n}", title, paragraphs) for n, (title, paragraphs) in enumerate(articles(path, held)))
    sentences = []
    for key, title, paragraphs in kept:
        for index, paragraph in enumerate(paragraphs):
            text = paragraph["context"]
            spans = _sentences(text)
            for i, (s, e) in enumerate(spans):
                before = to_simplified(text[spans[i - 1][0] : spans[i - 1][1]]) if i else ""
                sentences.append((to_simplified(text[s:e]), before, title, f"{key}/{index}"))
    pool = Pool.of(sentences)
    pairs: list[Pair] = []
    for key, title, paragraphs in kept:
        pairs.extend(pairs_of(title, paragraphs, pool, rng, key))
    return pairs, checksums


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--raw", type=Path, default=RAW, help="folder holding the three source files")
    parser.add_argument("--out", type=Path, default=ROOT / "training" / "work" / "pairs.jsonl")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    pairs, checksums = build(args.raw)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", encoding="utf-8") as out:
        for p in pairs:
            out.write(json.dumps(asdict(p), ensure_ascii=False) + "\n")
    sources = {name: {"sha256": digest, "url": SOURCES[name]} for name, digest in checksums.items()}
    (args.out.parent / "sources.json").write_text(json.dumps(sources, indent=2) + "\n", encoding="utf-8")
    kinds: dict[str, int] = {}
    for p in pairs:
        kinds[p.kind] = kinds.get(p.kind, 0) + 1
    log.info("%d pairs from %d questions %s → %s", len(pairs), len({p.group for p in pairs}), kinds, args.out)
    log.info("sha256 %s", checksums)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
