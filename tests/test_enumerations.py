"""Enumerated blocks and item markers, and the sentence heuristics on every text shape of the
benchmark corpora (no model: sentence functions only)."""

import json

from conftest import SHARED, shared_file

from rag.answer.enumerations import block_after, find_enumerations, ordinal
from rag.answer.evidence import has_figure, has_time
from rag.answer.scoring import is_heading, spells_out
from rag.config import ComposerSettings
from rag.ingest.chunk import sentence_spans
from rag.model import Span
from rag.query.definitions import definition_strength
from rag.text.normalize import compact


def test_find_enumerations_groups_consecutive_ordinals():
    text = "导语。\n一是甲。乙。\n二是丙。\n三是丁。\n（一）戊。\n（二）己。\n首先庚。其次辛。最后壬。"
    groups = [[text[s.start : s.end] for s in group] for group in find_enumerations(text)]
    assert ["一是甲。", "二是丙。", "三是丁。"] in groups
    assert ["（一）戊。", "（二）己。"] in groups
    assert ["首先庚。", "其次辛。", "最后壬。"] in groups


def test_circled_and_other_item_markers():
    assert [ordinal(t) for t in ("①", "②", "⑩", "3", "12", "三", "十", "十二", "二十", "其次", "最后")] == [
        1, 2, 10, 3, 12, 3, 10, 12, 20, 2, 99,
    ]  # fmt: skip
    text = "措施如下：\n①建立台账。\n②定期检查。\n③严肃问责。"
    (group,) = find_enumerations(text)
    assert [text[s.start : s.end] for s in group] == ["①建立台账。", "②定期检查。", "③严肃问责。"]


def _bench_texts() -> list[str]:
    corpora = sorted(shared_file(SHARED / "bench").glob("*/corpus.jsonl"))
    texts = []
    for corpus in corpora:
        with corpus.open(encoding="utf-8") as lines:
            texts.extend(json.loads(line)["text"] for line in lines if line.strip())
    return texts


def test_sentence_heuristics_run_on_every_benchmark_text():
    texts = _bench_texts()
    blocks = 0
    steps = ComposerSettings()
    for text in texts:
        blocks += len(find_enumerations(text))
        for span in sentence_spans(text):
            sentence = compact(text[span.start : span.end])
            definition_strength(sentence, ["责任", "制度"], 0.6, steps)
            spells_out(sentence, 3, "转")
            has_figure(sentence)
            has_time(sentence)
            is_heading(text, span)
    assert len(texts) > 1000 and blocks > 0


def test_parenthesized_and_dotted_numbers_are_item_markers():
    assert [ordinal(t) for t in ("⑴", "⑿", "⒇", "⒈", "⒛", "㈠", "㈩", "⑪", "⑳", "❸")] == [
        1,
        12,
        20,
        1,
        20,
        1,
        10,
        11,
        20,
        3,
    ]
    for items in (
        ["⑴以任何名义提供高档菜肴；", "⑵安排与公务无关的宴请；", "⑶用公款赠送纪念品。"],
        ["⒈建立台账。", "⒉定期检查。", "⒊严肃问责。"],
        ["㈠建立台账。", "㈡定期检查。"],
        ["(1)建立台账。", "(2)定期检查。", "(3)严肃问责。"],
        ["（1）建立台账。", "（2）定期检查。"],
        [f"{sign}第{i}项。" for i, sign in enumerate("①②③④⑤⑥⑦⑧⑨⑩⑪⑫", 1)],
    ):
        text = "严禁下列行为：\n" + "\n".join(items)
        assert [[text[s.start : s.end] for s in group] for group in find_enumerations(text)] == [items], items
    mixed = "要求如下：\n⑴建立台账。\n①定期检查。"  # two styles: no run of one
    assert find_enumerations(mixed) == []


def test_the_block_a_sentence_leads_in():
    text = "为此，必须把握二者的关系。\n一是相互依存。甲。\n二是相互区别。乙。\n其他段落。"
    lead = Span(0, text.index("\n"))
    block = block_after(text, lead)
    assert block is not None and [text[s.start : s.end] for s in block] == ["一是相互依存。", "二是相互区别。"]
    assert block_after(text, Span(text.index("其他"), len(text))) is None
    assert block_after(text, Span(text.index("甲"), text.index("甲") + 2)) is None  # the block is not after it


def test_an_abbreviation_spelled_out_with_quoted_items():
    sentence = "明确党委主体责任是根本、纪委监督责任是保障、党委书记第一责任人责任是关键、班子成员“一岗双责”是支撑。"
    assert spells_out(sentence, 4, "责")
    assert spells_out("实现“转职能、转方式、转作风”要求以来", 3, "转")
    assert not spells_out("转职能、转方式的要求", 3, "转")
