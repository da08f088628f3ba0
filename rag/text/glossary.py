"""English questions in the corpus's words: the Chinese terms of a small bilingual glossary.

The default model matches English questions to Chinese passages only loosely, and BM25 finds
nothing in them. `chinese_terms` gives the lexical rankings and name matching something to hold:
the Chinese names of the places an English question mentions (provinces, autonomous regions,
municipalities and a few large cities, in pinyin) and the party-discipline vocabulary the corpus is
written in. Terms are matched case-insensitively, longest first, on word boundaries.
"""

from __future__ import annotations

import re

PLACES = {
    "beijing": "北京",
    "tianjin": "天津",
    "shanghai": "上海",
    "chongqing": "重庆",
    "hebei": "河北",
    "shanxi": "山西",
    "shaanxi": "陕西",
    "inner mongolia": "内蒙古",
    "liaoning": "辽宁",
    "jilin": "吉林",
    "heilongjiang": "黑龙江",
    "jiangsu": "江苏",
    "zhejiang": "浙江",
    "anhui": "安徽",
    "fujian": "福建",
    "jiangxi": "江西",
    "shandong": "山东",
    "henan": "河南",
    "hubei": "湖北",
    "hunan": "湖南",
    "guangdong": "广东",
    "guangxi": "广西",
    "hainan": "海南",
    "sichuan": "四川",
    "guizhou": "贵州",
    "yunnan": "云南",
    "tibet": "西藏",
    "xizang": "西藏",
    "gansu": "甘肃",
    "qinghai": "青海",
    "ningxia": "宁夏",
    "xinjiang": "新疆",
    "hong kong": "香港",
    "macao": "澳门",
    "macau": "澳门",
    "taiwan": "台湾",
    "shenzhen": "深圳",
    "guangzhou": "广州",
    "nanjing": "南京",
    "hangzhou": "杭州",
    "wuhan": "武汉",
    "chengdu": "成都",
    "xi'an": "西安",
}
"""Provincial-level divisions and a few large cities."""

TERMS = {
    "central commission for discipline inspection": "中央纪委",
    "commission for discipline inspection": "纪委",
    "discipline inspection and supervision": "纪检监察",
    "discipline inspection": "纪检",
    "supervisory commission": "监委",
    "national supervisory commission": "国家监委",
    "party committee": "党委",
    "party leadership group": "党组",
    "party organization": "党组织",
    "party organisation": "党组织",
    "communist party": "共产党",
    "central committee": "党中央",
    "primary responsibility": "主体责任",
    "main responsibility": "主体责任",
    "principal responsibility": "主体责任",
    "supervisory responsibility": "监督责任",
    "supervision responsibility": "监督责任",
    "two responsibilities": "两个责任",
    "full and rigorous governance": "全面从严治党",
    "strict governance": "从严治党",
    "accountability": "问责",
    "supervision": "监督",
    "inspection tour": "巡视",
    "inspection": "检查",
    "stationed": "派驻",
    "team": "组",
    "integrity": "廉洁",
    "clean government": "廉政",
    "anti-corruption": "反腐败",
    "corruption": "腐败",
    "conduct": "作风",
    "discipline": "纪律",
    "violation": "违纪",
    "cadre": "干部",
    "cadres": "干部",
    "official": "干部",
    "officials": "干部",
    "ministerial-level": "部级",
    "department-level": "厅级",
    "bureau-level": "局级",
    "division-level": "处级",
    "section-level": "科级",
    "county-level": "县级",
    "township": "乡镇",
    "county": "县",
    "province": "省",
    "provincial": "省",
    "municipal": "市",
    "people's congress": "人大",
    "standing committee": "常委会",
    "federation of trade unions": "总工会",
    "all-china federation of trade unions": "全国总工会",
    "trade union": "工会",
    "poverty alleviation": "扶贫",
    "grassroots": "基层",
    "responsibility list": "责任清单",
    "list of responsibilities": "责任清单",
    "records": "档案",
    "database": "信息库",
    "talk": "谈话",
    "talks": "谈话",
    "meeting": "会议",
    "plenary session": "全会",
    "regulation": "条例",
    "regulations": "条例",
    "opinions": "意见",
    "notice": "通知",
    "measures": "措施",
    "mechanism": "机制",
    "system": "制度",
    "cases": "案件",
    "problems": "问题",
    "issues": "问题",
    "author": "作者",
    "photo": "摄",
}
"""Party-discipline vocabulary, as the corpus words it."""

_GLOSSARY = {**TERMS, **PLACES}
_PATTERN = re.compile(
    r"(?<![a-z'])(" + "|".join(re.escape(k) for k in sorted(_GLOSSARY, key=len, reverse=True)) + r")(?![a-z'])"
)


def chinese_terms(text: str) -> list[str]:
    """The Chinese terms of the glossary entries `text` mentions, in order, each once."""
    found = (_GLOSSARY[m.group(1)] for m in _PATTERN.finditer(text.lower().replace("’", "'")))
    return list(dict.fromkeys(found))
