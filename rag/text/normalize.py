"""The matching form of text: Traditional→Simplified, full-width→half-width, lower case.

Documents and questions go through the same `normalize`, so a Simplified question finds a
Traditional passage and back. Displayed text is never normalized.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

import opencc

_WHITESPACE = re.compile(r"\s+")


@lru_cache(maxsize=1)
def _t2s() -> opencc.OpenCC:
    return opencc.OpenCC("t2s")


@lru_cache(maxsize=1)
def _s2t() -> opencc.OpenCC:
    return opencc.OpenCC("s2t")


def to_traditional(text: str) -> str:
    """Simplified Chinese → Traditional (OpenCC `s2t`); other text is left as it is."""
    return _s2t().convert(text) if text else text


def is_traditional(text: str) -> bool:
    """Whether text is written in Traditional characters (it changes under Traditional→Simplified)."""
    return to_simplified(text) != text


def to_simplified(text: str) -> str:
    """Traditional Chinese → Simplified (OpenCC `t2s`); other text is left as it is."""
    return _t2s().convert(text) if text else text


def normalize(text: str) -> str:
    """Matching form: NFKC (full-width → half-width), Simplified script, lower case."""
    return to_simplified(unicodedata.normalize("NFKC", text)).lower()


def compact(text: str) -> str:
    """`normalize` with all whitespace removed: the form gold phrases are matched in."""
    return _WHITESPACE.sub("", normalize(text))
