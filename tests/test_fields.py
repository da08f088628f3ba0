"""Metadata read from a line (`rag/ingest/fields.py`): labelled fields, newspaper, 文号 and date lines,
bylines and photo credits, with their offsets; `时间：` is a date only in a document's head."""

from __future__ import annotations

import pytest

from rag.ingest.clean import clean
from rag.ingest.fields import meta_fields, read_meta
from rag.ingest.loaders import RawDocument


@pytest.mark.parametrize(
    ("line", "meta"),
    [
        ("时间:2022-09-20 04:12:12", {"date": "2022-09-20"}),
        ("发布时间：2023-09-17 01:42", {"date": "2023-09-17"}),
        ("发布日期:2021-12-13", {"date": "2021-12-13"}),
        ("作者:王炅 单位:浙江省纪委", {"author": "王炅", "affiliation": "浙江省纪委"}),
        ("来源：人民网", {"publisher": "人民网"}),
        ("2022年03月15日08:21 | 来源：人民网－人民日报", {"date": "2022年03月15日", "publisher": "人民网－人民日报"}),
        (
            "《人民日报》( 2022年01月13日 第09版)",
            {"publisher": "《人民日报》( 2022年01月13日 第09版)", "date": "2022年01月13日"},
        ),
        ("发文字号：国办发〔2021〕52号", {"doc_number": "国办发〔2021〕52号"}),
        ("国办发〔2021〕52号", {"doc_number": "国办发〔2021〕52号"}),
        ("发文机关：国务院办公厅", {"issuer": "国务院办公厅"}),
        ("成文日期：2021年12月13日", {"written_date": "2021年12月13日"}),
        ("索 引 号：000014349/2021-00123", {"index_number": "000014349/2021-00123"}),
        ("责任编辑:张三", {"editor": "张三"}),
        ("【责任编辑：刘阳】", {"editor": "刘阳"}),
        ("(责编：李明、王芳)", {"editor": "李明、王芳"}),
        ("(作者 李金英)", {"byline": "(作者 李金英)", "author": "李金英"}),
        ("文/张三", {"byline": "文/张三", "author": "张三"}),
        ("韩志忠 摄", {"photo_credit": "韩志忠 摄", "photographer": "韩志忠"}),
        ("(记者 王小明 摄)", {"photo_credit": "(记者 王小明 摄)", "photographer": "王小明"}),
        ("新华社记者 李学仁 摄", {"photo_credit": "新华社记者 李学仁 摄", "photographer": "李学仁"}),
        ("图为会场。 周敏 摄", {"photo_credit": "周敏 摄", "photographer": "周敏"}),
        ("现场禁止拍摄", None),
        ("党委要履行主体责任。", None),
        ("时间：上午9时", None),  # a generic label without a date is not metadata
    ],
)
def test_read_meta(line, meta):
    assert read_meta(line) == meta


def test_meta_fields_give_offsets_in_the_line():
    line = "发布时间：2021-12-20 10:00 来源：江州市纪委监委 作者：周敏"
    for key, value, start, end in meta_fields(line):
        assert line[start:end] == value, key
    assert [f.key for f in meta_fields(line)] == ["date", "publisher", "author"]


def test_generic_time_label_is_a_date_only_in_the_head():
    text = "会议通知\n各单位：\n定于近期召开全面从严治党工作会议，现将有关事项通知如下。\n时间：2021年12月13日上午9时\n地点：市委会议室"
    document = clean(RawDocument("n.txt", text))
    assert "date" not in document.meta
    assert "时间：2021年12月13日上午9时" in document.text
