"""Definitions: what a definition question asks about, and how plainly a sentence says what that is.

Used twice: retrieval lifts a passage that defines the question's subject (`X主要是指…`), and the
composer prefers such a sentence as the answer.
"""

from __future__ import annotations

import re

from rag.config import ComposerSettings

_DEFINES_STRONG = re.compile(r"(?:主要|具体)?(?:是指|指的是|就是|即是|即|包括|主要有|主要是)")
_DEFINES_WEAK = re.compile(r"是")


def subjects(lexical_question: str) -> list[str]:
    """What a definition question asks about (`纪检监察机关的职责定位` → `纪检监察机关的职责定位`,
    `纪检监察机关`, `职责定位`), longest first."""
    parts = [p.rstrip("是") for p in re.split(r"[\s“”\"'，,。]+", lexical_question) if len(p.rstrip("是")) >= 2]
    pieces = [q for p in parts for q in p.split("的") if len(q) >= 2 and q != p]
    return sorted(dict.fromkeys(parts + pieces), key=len, reverse=True)


def definition_strength(
    sentence: str, subjects_: list[str], strong: float, steps: ComposerSettings, plain_is: bool = True
) -> float:
    """How plainly a (normalized) sentence says what one of `subjects_` is: 0 (not at all) to `strong`,
    less by `steps.definition_step` past the sentence's start (`definition_lead_chars`) or for a bare
    `是` at it; a bare `是` past it gives `definition_plain_is`. Without `plain_is`, only an explicit
    cue (`是指`, `指的是`, `即`, `主要是`…) counts, not a bare `是`."""
    best = 0.0
    for subject in subjects_:
        for size in range(len(subject), min(4, len(subject)) - 1, -1):
            tail = subject[-size:]
            at = sentence.find(tail)
            if at < 0:
                continue
            after = at + len(tail)
            if after < len(sentence) and sentence[after] == "的":
                after += 1
            leads = at <= steps.definition_lead_chars
            if _DEFINES_STRONG.match(sentence, after):
                best = max(best, strong if leads else strong - steps.definition_step)
            elif plain_is and _DEFINES_WEAK.match(sentence, after):
                best = max(best, strong - steps.definition_step if leads else steps.definition_plain_is)
            break
    return best
