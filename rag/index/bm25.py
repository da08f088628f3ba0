"""BM25 over token ids: the lexical search structure (bm25s, scored with numpy), its idf and document frequencies."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import bm25s
import numpy as np


def token_ids(corpus_tokens: Iterable[list[str]], vocab: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """Every passage's tokens as ids of `vocab` (new tokens are added to it), concatenated, and the
    number of tokens of each passage."""
    ids: list[int] = []
    lengths: list[int] = []
    for tokens in corpus_tokens:
        ids.extend([vocab.setdefault(token, len(vocab)) for token in tokens])
        lengths.append(len(tokens))
    return np.asarray(ids, dtype=np.int32), np.asarray(lengths, dtype=np.int64)


def idf(df: np.ndarray, n: int) -> np.ndarray:
    """BM25's inverse document frequency (Lucene's, as bm25s scores) of tokens that occur in `df` of
    `n` passages."""
    return np.log(1 + (n - df + 0.5) / (df + 0.5))


def document_frequencies(ids: np.ndarray, offsets: np.ndarray, n_terms: int) -> np.ndarray:
    """Per token id, the number of passages it occurs in (passage `i`'s ids are `ids[offsets[i]:offsets[i+1]]`)."""
    lengths = np.diff(offsets)
    if len(lengths) == 0:
        return np.zeros(n_terms, dtype=np.int64)
    term, _, _ = _postings(ids, lengths)
    return np.bincount(term, minlength=n_terms).astype(np.int64)


def _postings(ids: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Every (token id, passage) pair that occurs, sorted by token id then passage, and how often it occurs."""
    n_docs = len(lengths)
    doc_of = np.repeat(np.arange(n_docs, dtype=np.int64), lengths)
    keys, tf = np.unique(np.asarray(ids, dtype=np.int64) * n_docs + doc_of, return_counts=True)
    return keys // n_docs, keys % n_docs, tf


class _NumpyBM25(bm25s.BM25):
    """bm25s (Lucene BM25) with its score matrix built by numpy from token ids instead of
    per-document Python loops: the same matrix as bm25s's own builder (equal within float32
    rounding), 3-4x faster, and buildable from stored ids without the token strings."""

    def build_index_from_tokens(self, corpus_tokens, show_progress=True, leave_progress=False):
        vocab: dict[str, int] = {}
        ids, lengths = token_ids(corpus_tokens, vocab)
        return self._matrix(ids, lengths, len(vocab)), vocab

    def index_ids(self, ids: np.ndarray, lengths: np.ndarray, vocab: dict[str, int]) -> None:
        """Index passages given as token ids of `vocab` (see `token_ids`)."""
        self.scores = self._matrix(ids, lengths, len(vocab))
        self.vocab_dict = vocab
        self.unique_token_ids_set = set(vocab.values())

    def _matrix(self, ids: np.ndarray, lengths: np.ndarray, n_terms: int) -> dict:
        self.nonoccurrence_array = None  # only BM25L / BM25+ need it; this is Lucene BM25
        n_docs = len(lengths)
        term, doc, tf = _postings(ids, lengths)  # sorted by term, then document: CSC order
        weight = idf(np.bincount(term, minlength=n_terms), n_docs)
        length = np.asarray(lengths, dtype=np.float64)
        tfc = tf / (self.k1 * (1 - self.b + self.b * length[doc] / max(length.mean(), 1e-9)) + tf)
        return {
            "data": (weight[term] * tfc).astype(self.dtype),
            "indices": doc.astype(self.int_dtype),
            "indptr": np.searchsorted(term, np.arange(n_terms + 1)).astype(self.int_dtype),
            "num_docs": n_docs,
        }


class BM25:
    """A BM25 index over token lists, numpy scores, saved as a bm25s folder."""

    def __init__(self, k1: float, b: float) -> None:
        """`k1`, `b`: BM25's parameters (`Settings.bm25_k1`, `Settings.bm25_b`)."""
        self.k1, self.b = k1, b
        self._bm25: bm25s.BM25 | None = None
        self.size = 0

    def build(self, corpus_tokens: list[list[str]]) -> BM25:
        """Index one token list per passage (an empty list indexes as an empty passage)."""
        vocab: dict[str, int] = {}
        ids, lengths = token_ids(corpus_tokens, vocab)
        return self.build_ids(ids, lengths, vocab)

    def build_ids(self, ids: np.ndarray, lengths: np.ndarray, vocab: dict[str, int]) -> BM25:
        """Index passages given as token ids of `vocab` and their lengths (see `token_ids`)."""
        self.size = len(lengths)
        self._bm25 = None
        if self.size:
            self._bm25 = _NumpyBM25(k1=self.k1, b=self.b)
            self._bm25.index_ids(ids, lengths, vocab)
        return self

    @property
    def vocabulary(self) -> dict[str, int]:
        """Token → id of the indexed vocabulary (read-only: copy it before adding tokens)."""
        return self._bm25.vocab_dict if self._bm25 is not None else {}

    def scores(self, tokens: list[str]) -> np.ndarray:
        """BM25 score of every passage for a tokenized query (zeros when nothing matches)."""
        out = np.zeros(self.size, dtype=np.float32)
        if self._bm25 is None:
            return out
        vocab = self._bm25.vocab_dict
        known = [t for t in tokens if t in vocab and t]
        if known:
            out[:] = self._bm25.get_scores(known)
        return out

    def document_frequency(self, tokens: list[str]) -> np.ndarray:
        """In how many passages each token occurs (0 for a token the index has never seen)."""
        out = np.zeros(len(tokens), dtype=np.int64)
        if self._bm25 is None:
            return out
        vocab = self._bm25.vocab_dict
        indptr = self._bm25.scores["indptr"]
        for i, token in enumerate(tokens):
            column = vocab.get(token)
            if column is not None and token and column + 1 < len(indptr):
                out[i] = indptr[column + 1] - indptr[column]
        return out

    def problem(self) -> str | None:
        """What is inconsistent in a loaded index (passage count, vocabulary vs postings), or None."""
        if self._bm25 is None:
            return None
        scores = self._bm25.scores
        if scores.get("num_docs") != self.size:
            return f"{scores.get('num_docs')} passages indexed for {self.size} chunks"
        if len(scores["indptr"]) != len(self.vocabulary) + 1:
            return f"{len(scores['indptr']) - 1} posting lists for {len(self.vocabulary)} words"
        return None

    def search(self, tokens: list[str], k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and scores of the `k` best passages with a positive score, best first."""
        scores = self.scores(tokens)
        return top_k(scores, k)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        if self._bm25 is not None:
            self._bm25.save(str(folder))

    @classmethod
    def load(cls, folder: Path, size: int, k1: float, b: float) -> BM25:
        index = cls(k1, b)
        index.size = size
        if size:
            index._bm25 = bm25s.BM25.load(str(folder), mmap=True)  # postings paged in as questions need them
        return index


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices and values of the `k` largest positive scores, best first."""
    if k <= 0 or scores.size == 0:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    k = min(k, scores.size)
    candidates = np.argpartition(-scores, k - 1)[:k]
    candidates = candidates[scores[candidates] > 0]
    order = candidates[np.argsort(-scores[candidates], kind="stable")]
    return order, scores[order]
