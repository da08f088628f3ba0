"""Question analysis: what kind of answer a question wants and what it pins down.

`question_kind` names the answer shape (see `KINDS`); `Query` carries a question in the forms the
rankings need plus what the composer and the abstention step read from it: the key and focus terms,
the two sides of a comparison, and the numbers (years, numbered items), meetings, 《titles》 and names
the answer must be about.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from rag.text.glossary import chinese_terms
from rag.text.normalize import compact
from rag.text.patterns import ASKED_YEAR, NUMBERED_ITEM, QUOTED_PHRASE, RELATIVE_YEAR, TITLE, numeral_value
from rag.text.tokenize import entities, key_terms, strip_question_words

#: Answer shapes, in the order `question_kind` tries them.
KINDS = (
    "metadata",
    "comparison",
    "summary",
    "why",
    "time",
    "number",
    "yes_no",
    "who",
    "definition",
    "how",
    "list",
    "general",
)

_CUES: dict[str, re.Pattern[str]] = {
    # who wrote / published an article: answered from the document's metadata lines
    "metadata": re.compile(
        r"(?=.*(?:文章|这篇|那篇|该文|本文|一文|材料|报道|稿件|《|\barticle\b|\bpiece\b|\breport\b))(?:.*(?:"
        r"作者|谁写|谁撰写|执笔|署名|撰稿|哪个单位的|什么单位的|发布(?:日期|时间)|(?:什么时候|何时|哪天|哪一天)(?:发布|发表|刊登|刊发|登出)|"
        r"发表(?:在|于)|刊登|刊发|登在|出处|来源|出自哪|哪份报纸|哪家报纸|哪家媒体|哪个网站|第几版|(?:谁|哪位).{0,4}(?:拍|摄)|摄影|"
        r"\bwho wrote\b|\bauthor|\bwritten by\b|\bphotograph|\bwho took\b|\bpublished\b|\bpublisher\b|\bwhich newspaper\b))"
    ),
    "comparison": re.compile(
        r"不同|异同|区别|差异|差别|相比|比较|对比|共同点|相同点|有何不一样|\bdiffer|\bcompare|\bcomparison\b"
    ),
    "summary": re.compile(
        r"概括|总结一下|归纳|主要内容|主要讲|讲了(?:什么|哪些|哪几)|讲的是什么|说了(?:什么|哪些)|主要说|写了(?:什么|哪些)|"
        r"主要写|要点|大意|梗概|摘要|核心内容|主要观点|\bsummar|\bmain points\b|\boverview\b|\bwhat is .* about\b"
    ),
    "why": re.compile(r"为什么|为何|什么原因|原因是|何以|怎么会|\bwhy\b|\breasons?\b"),
    "time": re.compile(
        r"哪一年|哪年|何时|什么时候|哪天|哪一天|日期|几月|几号|\bwhen\b|\bwhat year\b|\bwhich year\b|\bwhat date\b"
    ),
    "number": re.compile(
        r"多少|(?<![哪第这那近前好])几[个项名人次年天家条位批种件类级层所起岁]|百分之几|多大比例|\bhow many\b|\bhow much\b|"
        r"\bwhat percentage\b|\bwhat proportion\b"
    ),
    "yes_no": re.compile(
        r"是否|能否|能不能|可不可以|可否|是不是|有没有|会不会|要不要|需不需要|对不对|吗[?？。!！\s]*$|"
        r"^(?:is|are|does|do|did|can|has|have|was|were)\b"
    ),
    "who": re.compile(
        r"谁|哪位|什么人|哪个(?:部门|单位|机关|机构|组织|地方|省|市)|哪些(?:部门|单位|机关|机构|组织|人|地方)|"
        r"什么(?:部门|单位|机关|机构|组织)|\bwho\b|\bwhich (?:department|body|organi[sz]ation|agency)\b"
    ),
    "definition": re.compile(
        r"是什么|指什么|什么是|是指|含义|定义|定位|意思|内涵|角色|什么叫|\bwhat is\b|\bwhat does .* mean\b|\bmeaning\b"
    ),
    "how": re.compile(
        r"如何|怎样|怎么|措施|举措|做法|办法|途径|步骤|方法|方式|\bhow\b|\bwhat measures\b|\bwhat steps\b"
    ),
    "list": re.compile(r"包括|包含|哪些|哪几|几个方面|哪[一二三四五六七八九十两]+|表现|\bwhich\b|\binclude"),
}


def compares(term: str) -> bool:
    """Whether a key term is how a comparison is asked (`不同`, `异同`, `区别`), not what it is about."""
    return bool(_CUES["comparison"].fullmatch(term))


#: Modal and auxiliary verbs, and English question words: how a question is put, not what it is about.
_MODALS = frozenset(
    "必须 还会 能够 还要 务必 一定 应该 应当 需要 可以 得以 "
    "what which who whom whose when where why how does do did is are was were the a an of in on to for "
    "include includes mean means about".split()
)
#: `哪` before a count (`哪三转`, `哪两个`): the question word, not part of the term.
_WHICH = re.compile(r"^哪(?=[一二三四五六七八九十两])")
_ASKING = re.compile(
    r"如何|怎样|怎么|为什么|为何|什么|哪(?:些|几|个|一|里|儿|次|年|天|位|份|种|类|家|届|所|条|项|方面)?|多少|几[个项名次年]|是否|何时"
)
_CLAUSE = re.compile(r"[，,。;；:：!！?？\s]")
_CJK = re.compile(r"[\u3400-\u9fff]")

# --- comparison sides ---------------------------------------------------------------------------
_AND = re.compile(r"和|与|跟|以及|及|、|\band\b|\bvs\.?\b|\bversus\b")
_BEFORE_SIDES = re.compile(r"怎么看|如何看待|看待|怎样看|如何|怎样|怎么|分别|认为|比较|对比|关于|请问|在|对")
_SIDE_STOP = re.compile(
    r"在|对|的|分别|各自|各|都|有|是|怎么|如何|怎样|为什么|之间|两者|二者|相比|比较|对比|方面|\bin\b|\bon\b|\bfor\b"
)
_NOT_A_SIDE = re.compile(r"什么|怎|如何|哪|谁|为何|为什么|分别|是否|多少")
_SIDE_FILLER = re.compile(r"(?:那|这)(?:篇|份|个)(?:文章|材料|报道|文件)?|文章|材料|一文|的做法|做法|$")
#: "A和B分别/各…": a comparison when the question names two sides.
_EACH = re.compile(r"分别|各自|各(?![级地类项方种个部单界族位条])|\beach\b|\brespectively\b")
_DOCUMENTS = re.compile(r"[两二几]篇|[两二几]份|[两二]个文件|两文|各篇|几篇|\bboth (?:articles|documents|texts)\b")

# --- what the answer must be about -----------------------------------------------------------------
_PLACE_TAGS = frozenset({"ns", "nt"})
_NUMERAL = "一二三四五六七八九十"
_MEETING = re.compile(
    rf"[{_NUMERAL}]+届(?:中央)?(?:纪委)?[{_NUMERAL}]+(?:中|次)全会|[{_NUMERAL}]+中全会|"
    rf"第[{_NUMERAL}]+次全国(?:代表大会|纪检监察工作会议)|[{_NUMERAL}]{{2,3}}大(?![会学])"
)
_ORDINAL_REF = re.compile(rf"第([{_NUMERAL}\d]{{1,3}})(?:点|条|个|项|方面|部分|种|是)")


def question_kind(normalized_question: str) -> str:
    """The answer shape a question wants: one of `KINDS` (`general` when no cue matches)."""
    text = normalized_question.strip()
    for kind, cue in _CUES.items():
        if kind == "comparison":
            if cue.search(text) and (comparison_sides(text) or _DOCUMENTS.search(text)):
                return kind  # "不同" without two sides ("不同地区如何…") is not a comparison
            asks_figure = _CUES["number"].search(text) or _CUES["time"].search(text)
            if _EACH.search(text) and not asks_figure and comparison_sides(text):
                return kind  # "A和B各有多少…" asks for figures, not a comparison
        elif cue.search(text):
            return kind
    return "general"


def is_chinese(text: str) -> bool:
    """True when the text has Chinese words to match: four Chinese characters or more, at least a
    third of its letters, or too few words for a sentence in another language (`PYTHON`)."""
    letters = [c for c in text if c.isalpha()]
    chinese = len(_CJK.findall(text))
    if chinese >= 4 or (bool(letters) and 3 * chinese >= len(letters)):
        return True
    return len(re.findall(r"[^\W\d_]+", text)) < 4


def comparison_sides(normalized_question: str) -> tuple[str, str] | None:
    """The two things a comparison question names (`天津和山东分别…` → (`天津`, `山东`)), or None."""
    for clause in re.split(r"[，,。;；:：!！?？]", normalized_question):
        for conj in _AND.finditer(clause):
            left = _BEFORE_SIDES.split(clause[: conj.start()])[-1].strip()
            right_text = clause[conj.end() :].strip()
            stop = _SIDE_STOP.search(right_text)
            right = right_text[: stop.start()] if stop else right_text
            left, right = _side(left), _side(right)
            if (
                2 <= len(left) <= 24
                and 2 <= len(right) <= 24
                and left != right
                and not _NOT_A_SIDE.search(left + right)
            ):
                return left, right
            break  # only the first conjunction of a clause joins the sides
    return None


def _side(text: str) -> str:
    text = _SIDE_FILLER.sub("", text.strip(" “”\"'")).strip()
    return text.rstrip("的").strip()


def ordinal_reference(text: str) -> int | None:
    """`第三点…` → 3, `第2条` → 2: which item of an earlier answer a follow-up refers to."""
    match = _ORDINAL_REF.search(text)
    if not match:
        return None
    token = match.group(1)
    if token.isdecimal():
        return int(token)
    if token == "十":
        return 10
    if token.startswith("十"):
        return 10 + _NUMERAL.index(token[1]) + 1
    if len(token) == 2 and token.endswith("十"):
        return (_NUMERAL.index(token[0]) + 1) * 10
    return _NUMERAL.index(token[0]) + 1


@dataclass(frozen=True)
class Identifier:
    """A number a question pins down: a year (`2021`, kind `年`) or a numbered item (`编号77`, kind
    `编号`; `第十二条`, kind `条`, the unit of a 第N…), as the question writes it and by its value."""

    text: str
    kind: str
    value: int


def identifiers(text: str) -> list[Identifier]:
    """The numbered items a text (matching form) names: `编号77`, `第45号`, `第十二条`, `第二批`."""
    found = []
    for match in NUMBERED_ITEM.finditer(text):
        if match.group("id"):
            found.append(Identifier(f"编号{match.group('id')}", "编号", int(match.group("id"))))
        else:
            found.append(Identifier(match.group(0), match.group("unit"), numeral_value(match.group("ordinal"))))
    return found


def _with_items(terms: list[str], items: Sequence[Identifier], add: bool) -> list[str]:
    """`terms` with each numbered item in place of the words it is made of (`编号` `77` → `编号77`;
    `第十` `十二` `十二条` → `第十二条`), and with every item when `add` (a one-digit number is no word
    of its own): an item is matched by its number (`rag.answer.evidence.coverage`), not by its parts."""
    out: list[str] = []
    for term in terms:
        item = next((i.text for i in items if term in i.text), None)
        out.append(item or term)
    if add:
        out.extend(i.text for i in items)
    return list(dict.fromkeys(out))


@dataclass
class Query:
    """A question in the forms each ranking needs, with what question analysis found in it."""

    text: str
    normalized: str
    lexical: str
    """Normalized, without question words: what BM25 and term coverage look at."""
    vector: np.ndarray
    kind: str = "general"
    """What shape of answer the question wants: see `question_kind`."""

    @classmethod
    def of(cls, text: str, normalized: str, vector: np.ndarray) -> Query:
        """Analyze a question (`normalized` is its `rag.text.normalize.normalize` form). The lexical form of
        a question not in Chinese is the Chinese terms of what it mentions (`rag.text.glossary`), if any:
        its English words would only count as terms no passage has."""
        lexical = strip_question_words(normalized)
        if not is_chinese(normalized):
            lexical = " ".join(chinese_terms(normalized)) or lexical
        return cls(text, normalized, lexical, vector, question_kind(normalized))

    @cached_property
    def key_terms(self) -> list[str]:
        """Distinct words of the question that carry its topic (modal verbs left out; `哪三转` is
        `三转` asked about)."""
        terms = [_WHICH.sub("", t) for t in key_terms(self.lexical) if t not in _MODALS]
        terms = list(dict.fromkeys(t for t in terms if t))
        return _with_items(terms or key_terms(self.lexical), self.items, add=True)

    @cached_property
    def focus_terms(self) -> list[str]:
        """Key terms of what the question asks about: the words right after its question word
        (`…如何设置考核内容`), or right before it when nothing follows (`纪委监督责任包括什么`)."""
        match = _ASKING.search(self.normalized)
        if not match:
            return []
        after = _CLAUSE.split(self.normalized[match.end() :], 1)[0]
        before = _CLAUSE.split(self.normalized[: match.start()])[-1][-8:]
        segment = after if len(key_terms(strip_question_words(after))) else before
        return _with_items(
            [t for t in key_terms(strip_question_words(segment)) if t not in _MODALS], self.items, add=False
        )

    @cached_property
    def asks(self) -> bool:
        """Whether the text asks something (a question word or mark), not only names a topic (`两张网 上海`)."""
        return bool(_ASKING.search(self.normalized)) or self.normalized.rstrip().endswith(("?", "？"))

    @cached_property
    def chinese(self) -> bool:
        """Whether the question is written in Chinese (else dense retrieval carries it)."""
        return is_chinese(self.normalized)

    @cached_property
    def sides(self) -> tuple[str, str] | None:
        """The two named sides of a comparison question."""
        return comparison_sides(self.normalized) if self.kind == "comparison" else None

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Places, people and organisations the question names (jieba ns / nr / nt)."""
        return entities(self.lexical)

    @cached_property
    def places(self) -> tuple[str, ...]:
        """Places and organisations the question names (jieba ns / nt): what the answer must be
        about. Person tags (nr) are left out: the tagger gives them to unknown common words."""
        return entities(self.lexical, _PLACE_TAGS)

    @cached_property
    def identifiers(self) -> tuple[Identifier, ...]:
        """The numbers the question pins down, which its answer must name: years (`2021年`,
        `2018到2020年` → 2018, 2020), then numbered items (`编号77`, `第45号`, `第十二条`, `第二批`)."""
        years = [Identifier(y, "年", int(y)) for y in dict.fromkeys(ASKED_YEAR.findall(self.normalized))]
        return tuple(dict.fromkeys([*years, *self.items]))

    @cached_property
    def items(self) -> tuple[Identifier, ...]:
        """The numbered items the question names (its `identifiers` other than years)."""
        return tuple(dict.fromkeys(identifiers(compact(self.normalized))))

    @cached_property
    def relative_time(self) -> bool:
        """The question pins a year the corpus cannot resolve (`去年`, `今年`)."""
        return bool(RELATIVE_YEAR.search(self.normalized))

    @cached_property
    def meetings(self) -> tuple[str, ...]:
        """Meetings the question names (`二十届中央纪委三次全会`, `三中全会`, `十九大`)."""
        return tuple(dict.fromkeys(m.group(0) for m in _MEETING.finditer(self.normalized)))

    @cached_property
    def titles(self) -> tuple[str, ...]:
        """Documents the question names in 《…》."""
        return tuple(dict.fromkeys(TITLE.findall(self.normalized)))

    @cached_property
    def quoted(self) -> tuple[str, ...]:
        """Terms the question puts in quotation marks (`“三个结合”`)."""
        return tuple(dict.fromkeys(QUOTED_PHRASE.findall(self.normalized)))
