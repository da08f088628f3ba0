"""Words a publisher masked with `*` (`*的主体责任` for 党委的主体责任), filled in for matching only.

Two fillings, for two readers: the composer fills a mask with the question's key term whose
neighbours it has (`fill_with_terms`); the checker of written answers fills it with whatever the
written sentence has between the same neighbours (`fill_from_claim`). A quote stays verbatim either way.
"""

from __future__ import annotations

import re

from rag.text.normalize import compact
from rag.text.patterns import MASK

_HAN_TAIL = re.compile(r"[\u3400-\u9fff]*$")
_HAN_HEAD = re.compile(r"[\u3400-\u9fff]*")


def fill_with_terms(text: str, terms: list[str], question: str) -> str:
    """`text` (matching form) with each `*` mask that stands where the question has one of `terms`
    filled with that term: the mask is followed (after an optional 的) by the two characters that follow
    the term in the question, or preceded by the two that precede it (`*的主体责任` for `党委主体责任`).
    A source that masks words (`*` for 党委) then still matches them.
    A text without a mask comes back as it is (`coverage` puts it in matching form once)."""
    if "*" not in text and "＊" not in text:  # full-width masks are `*` in matching form
        return text
    haystack = compact(text)
    asked = compact(question)
    for term in terms:
        if term in haystack or term not in asked:
            continue
        at = asked.find(term)
        after = asked[at + len(term) :].lstrip("的")[:2]
        before = asked[max(at - 2, 0) : at]
        pieces, end = [], 0
        for mask in MASK.finditer(haystack):
            following, preceding = haystack[mask.end() :].lstrip("的"), haystack[: mask.start()]
            fits = (len(after) == 2 and following.startswith(after)) or (
                len(before) == 2 and preceding.endswith(before)
            )
            pieces += [haystack[end : mask.start()], term if fits else mask.group(0)]
            end = mask.end()
        haystack = "".join(pieces) + haystack[end:]
    return haystack


def fill_from_claim(quote: str, claim: str) -> str:
    """`quote` with each `*` mask filled with what `claim` has between the same neighbouring
    Chinese characters (`协助*加强` + `协助党委加强` → `协助党委加强`); a mask without two such
    neighbours, or whose neighbours the claim lacks, stays."""

    def fill(match: re.Match[str]) -> str:
        before = _HAN_TAIL.search(quote[max(0, match.start() - 2) : match.start()])
        after = _HAN_HEAD.match(quote[match.end() : match.end() + 2])
        left, right = before.group() if before else "", after.group() if after else ""
        if len(left + right) < 2:
            return match.group()
        found = re.search(f"{re.escape(left)}([\u3400-\u9fff]{{1,4}}?){re.escape(right)}", claim)
        return found.group(1) if found else match.group()

    return MASK.sub(fill, quote)
