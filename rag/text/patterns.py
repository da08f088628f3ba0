"""Patterns that several modules read text with: masks, quoted terms, titles, dates, years, figures.

One meaning per name. Where two modules want something alike but not the same (a quoted term of up
to 12 characters, a quoted phrase of up to 20), each variant has its own name that says how it
differs. Every pattern here reads matching form (`rag.text.normalize.compact`) unless it says so; the
cues of one module's own (question kinds, list markers, …) stay in that module.
"""

from __future__ import annotations

import re

# --- masks -------------------------------------------------------------------------------------------

#: A word the publisher masked: a run of `*` (a full-width `＊` is `*` in matching form).
MASK = re.compile(r"\*+")

# --- quotation marks ---------------------------------------------------------------------------------

#: A short term in quotation marks, marks included: 1–12 characters in “…”, "…" or 「…」 (`“两个责任”`).
QUOTED_TERM = re.compile(r"[“「\"][^”」\"]{1,12}[”」\"]")
#: A phrase a question quotes, group 1 without the marks: 2–20 characters in “…”, "…", 「…」 or 『…』.
QUOTED_PHRASE = re.compile(r"[“\"「『]([^”\"」』]{2,20})[”\"」』]")
#: A quoted term a written sentence states, group 1 without the marks: 1–16 characters in “…”, "…" or
#: 「…」, no 《》 inside (a fact its quote must hold).
QUOTED_FACT = re.compile(r"[“「\"]([^”」\"《》]{1,16})[”」\"]")
#: A quoted name or 《title》, marks included, up to 40 characters: the figures in it count nothing.
QUOTED_NAME = re.compile(r"[“\"「『《][^”\"」』》]{0,40}[”\"」』》]")

# --- titles ------------------------------------------------------------------------------------------

#: A document named in 《…》, group 1 = its title of 2–60 characters (the titles a question names).
TITLE = re.compile(r"《([^》]{2,60})》")
#: The same, 2–40 characters: a title the question asks documents to carry (`rag.query.names`).
SHORT_TITLE = re.compile(r"《([^》]{2,40})》")
#: A 《title》 a written sentence states, marks included, 1–80 characters (a fact its quote must hold).
TITLE_FACT = re.compile(r"《[^》]{1,80}》")

# --- dates and years ---------------------------------------------------------------------------------

#: Any mention of a date: a year before 年 or a date separator, a month (and day), a year in Chinese
#: numerals (二〇二一年), Chinese months (三月份, 三、四月, 五月八日). Whether a text says when.
DATE_MENTION = re.compile(
    r"(?:19|20)\d{2}\s*(?:年|[-/.]\s*\d)|\d{1,2}\s*月\s*\d{0,2}\s*日?|[〇零一二三四五六七八九]{4}年|"
    r"[一二三四五六七八九十]{1,3}(?:、[一二三四五六七八九十]{1,3})*月(?:份|[一二三四五六七八九十]{1,3}日)?"
)
#: A date written in figures, whole (`2021年3月5日`, `2021-03-05`, `3月5日`, `3月份`): a fact a written
#: sentence states and its quote must hold verbatim.
DATE_FACT = re.compile(
    r"\d{4}年(?:\d{1,2}月(?:\d{1,2}日)?)?|\d{1,2}月\d{1,2}日|\d{4}[-/.]\d{1,2}(?:[-/.]\d{1,2})?(?!\d)|\d{1,2}月份?"
)
#: A four-digit year (1900–2099) that is not part of a longer number.
YEAR = re.compile(r"(?<!\d)(?:19|20)\d{2}(?!\d)")
#: A year a question asks about, group 1: before 年 (not 年代/年多/年前/年间), a date separator or a
#: range (`2018到2020年`).
ASKED_YEAR = re.compile(r"(?<!\d)((?:19|20)\d{2})(?=\s*年(?![代多前间])|\s*[-/.]\s*\d|\s*(?:到|至|—|－))")
#: Four digits 19xx/20xx right before 年, also at the end of a longer number (a name to look for).
YEAR_BEFORE_NIAN = re.compile(r"(?:19|20)\d{2}(?=年)")
#: Words that place a year relative to today: the corpus cannot tell which year they mean.
RELATIVE_YEARS = ("去年", "今年", "明年", "前年", "本年度", "上一年", "上年度")
RELATIVE_YEAR = re.compile("|".join(RELATIVE_YEARS))

# --- figures -----------------------------------------------------------------------------------------

#: A figure in Arabic digits, decimals and a percent or per-mille sign included (`28`, `10.5%`, `3‰`).
FIGURE = re.compile(r"\d+(?:\.\d+)?\s*(?:%|％|‰)?")
#: A number a written sentence states (`76`, `10.5%`), matched as a whole number in its quote.
NUMBER_FACT = re.compile(r"\d+(?:\.\d+)?%?")
#: A count in Chinese numerals with its measure word (`十二项`, `两批`, `三成`), not a lone 一 (mostly "a").
CHINESE_COUNT = re.compile(
    r"(?:[两二三四五六七八九十百千万亿]|一[十百千万亿])[一二两三四五六七八九十百千万亿零〇]*"
    r"(?:项|名|人|个|条|家|批|次|件|起|倍|种|类|级|层|位|所|支|对|份|篇|户|元|亿|万|成|年|月|天|届|轮|期|处)"
)
#: A count in Chinese numerals a written sentence states (`三个`, `五方面`, `三分之一`), group 1 = the
#: numerals (一 alone is left to the caller); not inside an ordinal (第三个) or a longer numeral.
CHINESE_COUNT_FACT = re.compile(
    r"(?<![一二三四五六七八九十百千万亿两零〇第])([一二三四五六七八九十百千万亿两零〇]{1,6})"
    r"(?:个|项|名|条|次|人|家|批|年|天|倍|位|种|类|级|层|期|届|轮|大|张|起|件|份|篇|部|场|元|所|户|方面|分之[一二三四五六七八九十]+)"
)

# --- numbered items ----------------------------------------------------------------------------------

#: Chinese numerals, as they write a number (`十二`, `一百零五`) or its digits (`二〇二二`).
CHINESE_NUMERALS = "零〇一二两三四五六七八九十百千"
#: An item a document numbers, as a question names it and a text gives it: `编号77` (`编号为7`, `编号：7`;
#: group `id`), or 第 with a numeral and what it numbers (`第45号`, `第十二条`, `第二批`; groups `ordinal`, `unit`).
#: Not an ordinal of speech: 第一种, 第三点, 第一次, 第一责任人 number no item of a document.
NUMBERED_ITEM = re.compile(
    rf"编号(?:为|是)?[:#]?(?P<id>\d+)|第(?P<ordinal>\d+|[{CHINESE_NUMERALS}]+)(?P<unit>号|批|条|款|章|节|期|轮|届|版)"
)
#: A session numbered without its 第 (`四届全国人大`, `十九届四中全会`), group 1 = the numeral: a text
#: names 第四届 so as often as with it.
BARE_SESSION = re.compile(rf"(?<![{CHINESE_NUMERALS}\d])(\d+|[{CHINESE_NUMERALS}]+)届")
_DIGITS = {c: i for i, c in enumerate("〇一二三四五六七八九")} | {"零": 0, "两": 2}
_TENS = {"十": 10, "百": 100, "千": 1000}


def numeral_value(token: str) -> int:
    """The number of Arabic digits or Chinese numerals: `77`, `十二`, `一百零五`, `二〇二二` → 77, 12, 105, 2022."""
    if token.isdecimal():  # any script's digits (not ②, which is no decimal)
        return int(token)
    if not any(c in _TENS for c in token):  # digit by digit: 二〇二二
        return int("".join(str(_DIGITS[c]) for c in token))
    total, digit = 0, 0
    for c in token:
        if c in _TENS:
            total += (digit or 1) * _TENS[c]
            digit = 0
        else:
            digit = _DIGITS[c]
    return total + digit
