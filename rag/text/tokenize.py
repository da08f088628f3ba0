"""Tokens of normalized text for the lexical rankings and question analysis: jieba words (with the
project's dictionary), character bigrams, key terms, question words stripped, tagged entities."""

from __future__ import annotations

import logging
import re
from functools import lru_cache

import jieba
import jieba.posseg

jieba.setLogLevel(logging.WARNING)

_CJK_RUN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]+|[a-z0-9]+(?:[.\-_][a-z0-9]+)*")
_WORDLIKE = re.compile(r"[\w\u3400-\u9fff]")

#: Question and function words that say how to answer, not what about; dropped from questions.
QUESTION_WORDS = re.compile(
    r"请问|请|为什么|为何|什么样|什么|哪些|哪几|哪个|哪里|哪一|怎么样|怎么|怎样|如何|多少|几个|几项|是否|有没有|"
    r"具体|主要|一般|应该|应当|需要|可以|包括|包含|指的是|是指|指|意思|情况|分别|有关|关于|吗|呢|吧|啊|呀|\?|？"
)
STOPWORDS = frozenset(
    "的 了 和 与 及 或 是 在 对 为 把 被 将 有 要 也 都 就 而 并 等 中 上 下 其 之 以 于 这 那 个 各 该 一".split()
)


@lru_cache(maxsize=1)
def _jieba() -> jieba.Tokenizer:
    """jieba's default tokenizer, loaded; `jieba.posseg` shares it (one dictionary in memory, not two)."""
    jieba.dt.initialize()
    return jieba.dt


def words(text: str) -> list[str]:
    """jieba words (search mode) of normalized text, without punctuation and stop words."""
    return [w for w in _jieba().cut_for_search(text) if _WORDLIKE.search(w) and w.strip() and w not in STOPWORDS]


def key_terms(text: str) -> list[str]:
    """Distinct topic words of normalized text: jieba words of 2+ characters (with their search-mode
    parts), and runs of single characters joined (`年` `假` → `年假`), stop words left out."""
    terms: list[str] = []
    run = ""
    for token in _jieba().cut(text):
        if len(token) == 1 and _WORDLIKE.match(token) and token not in STOPWORDS:
            run += token
            continue
        if len(run) >= 2:
            terms.append(run)
        run = ""
        if len(token) >= 2 and _WORDLIKE.search(token):
            terms.extend(w for w in words(token) if len(w) >= 2)
    if len(run) >= 2:
        terms.append(run)
    return list(dict.fromkeys(terms))


def bigrams(text: str) -> list[str]:
    """Overlapping character bigrams of Chinese runs; Latin words and numbers whole."""
    tokens: list[str] = []
    for run in _CJK_RUN.findall(text):
        if not ("\u3400" <= run[0] <= "\ufaff") or len(run) == 1:
            tokens.append(run)
        else:
            tokens.extend(run[i : i + 2] for i in range(len(run) - 1))
    return tokens


def strip_question_words(normalized_question: str) -> str:
    """The question without its question and function words (keeps it whole if nothing is left)."""
    stripped = QUESTION_WORDS.sub(" ", normalized_question)
    return stripped if stripped.strip() else normalized_question


_ENTITY_TAGS = frozenset({"ns", "nr", "nt"})


@lru_cache(maxsize=1024)
def entities(text: str, tags: frozenset[str] = _ENTITY_TAGS) -> tuple[str, ...]:
    """Place, person and organisation names in text (jieba part-of-speech tags ns / nr / nt, or
    those of `tags`)."""
    _jieba()
    return tuple(dict.fromkeys(w.word for w in jieba.posseg.cut(text) if w.flag in tags and len(w.word) > 1))


def tagged(text: str) -> list[tuple[str, str]]:
    """jieba words of text with their part-of-speech tags."""
    _jieba()
    return [(w.word, w.flag) for w in jieba.posseg.cut(text)]


def dictionary_frequency(word: str) -> int:
    """How often jieba's dictionary counts `word` (0 for a word it does not know)."""
    return _jieba().FREQ.get(word) or 0


TOKENIZERS = {"words": words, "bigrams": bigrams}



