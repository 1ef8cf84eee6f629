"""Query/text normalisation for the FAQ matcher.

Steps (in order): Traditional → Simplified (OpenCC ``t2s``), full-width → half-width
(NFKC), lower case, drop sentence-final particles (吗/呢/吧…) and filler phrases (请问,
你好, 麻烦, please, hi …), strip punctuation (Chinese and ASCII), collapse spaces, then
apply the synonyms/typo table from ``knowledge/data/synonyms.yaml`` (路登→路灯, 拉圾→垃圾 …).

Everything is compiled once at import / first use; a call costs well under 0.2 ms.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

import yaml

__all__ = ["drop_negated", "normalize", "to_simplified", "load_synonyms", "FILLERS", "CHITCHAT", "is_chitchat", "SYNONYMS_PATH"]

SYNONYMS_PATH = Path(__file__).parent / "data" / "synonyms.yaml"


@lru_cache(maxsize=1)
def _t2s():
    import opencc

    return opencc.OpenCC("t2s")


def to_simplified(text: str) -> str:
    if text.isascii():
        return text
    return _t2s().convert(text)


# Filler phrases removed anywhere (longest first when compiled). Only multi-character
# phrases here, so they cannot eat part of a real word.
FILLERS = (
    "我想问一下", "我想咨询一下", "想咨询一下", "我想请问", "我想知道", "想知道", "请问一下", "请问", "问一下",
    "想问一下", "我想问", "想问", "咨询一下", "打扰一下", "打扰了", "不好意思", "麻烦问一下", "麻烦您", "麻烦你",
    "麻烦", "你好", "您好", "你们好", "大家好", "在吗", "在不在", "谢谢你", "谢谢您", "谢谢", "多谢",
    "一下", "帮我看看", "帮忙看看", "帮我查查", "小助手", "机器人", "哈喽", "嗨",
)
# Sentence-final particles, removed only before punctuation/space/end of text.
PARTICLES = "吗呢啊呀吧哈哦噢喔啦咧哇嘞呗"  # not 么/嘛: 什么, 干嘛
# English fillers, removed as whole words.
EN_FILLERS = ("please", "pls", "plz", "hi", "hello", "hey", "thanks", "thank you", "thx", "excuse me", "sorry",
              "can you tell me", "i want to know", "i wonder", "could you", "can you", "bot")

# Words that, when they are ALL that is left of a query, mark it as chit-chat (see index.py).
CHITCHAT = frozenset("""
你好 您好 在吗 在不在 谢谢 多谢 辛苦了 辛苦 好的 好 嗯 嗯嗯 哦 哦哦 ok okay 收到 明白 知道了 行 可以 没事
再见 拜拜 bye 晚安 早上好 早安 中午好 下午好 晚上好 哈哈 哈哈哈 呵呵 嘿嘿 你是谁 你叫什么 你是机器人
test 测试 hello hi hey thanks thank you 对 是的 不是 厉害 牛 棒 赞 666 点赞 好吧 算了 没了 没有了
""".split())

_PUNCT = (r"""!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~"""
          "，。！？、；：“”‘’（）《》〈〉【】『』「」〔〕…—～·￥％＠＃＆＊｜〜–―•・°℃")
_PUNCT_CLASS = "[" + re.escape(_PUNCT) + r"\s]"
_PARTICLE_RE = re.compile("(?:[" + PARTICLES + "]+|(?<=[\u3400-\u9fff])不(?=[?？]))(?=" + _PUNCT_CLASS + "|$)")  # 「能找你不？」
_PUNCT_RE = re.compile(_PUNCT_CLASS + "+")
_FILLER_RE = re.compile("|".join(sorted(map(re.escape, FILLERS), key=len, reverse=True)))
_EN_FILLER_RE = re.compile(r"\b(?:" + "|".join(sorted(map(re.escape, EN_FILLERS), key=len, reverse=True)) + r")\b")
_EMOJI_RE = re.compile("[\U0001F000-\U0001FAFF\u2600-\u27BF\uFE0F\u200d]+")
_SPACE_RE = re.compile(r"\s+")
# A space between two CJK characters carries no meaning; between Latin words it does.
_CJK_SPACE_RE = re.compile(r"(?<=[\u3400-\u9fff]) +(?=[\u3400-\u9fff])")


def load_synonyms(path: str | Path | None = None) -> dict[str, str]:
    """``{variant: canonical}`` from a YAML mapping ``canonical: [variant, …]``."""
    p = Path(path) if path is not None else SYNONYMS_PATH
    if not p.exists():
        return {}
    data = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    data = data.get("synonyms", data) if isinstance(data, dict) else {}
    out: dict[str, str] = {}
    for canonical, variants in (data or {}).items():
        canon = _base(str(canonical))
        if isinstance(variants, str):
            variants = [variants]
        for v in variants or ():
            key = _base(str(v))
            if key and key != canon:
                out[key] = canon
    return out


@lru_cache(maxsize=1)
def _synonym_re() -> tuple[re.Pattern[str] | None, dict[str, str]]:
    table = load_synonyms()
    if not table:
        return None, table
    table = dict(table)
    # A canonical form that contains one of its variants (老旧小区 ⊃ 旧小区) maps to itself and, being
    # longer, is tried first: a rule never fires inside its own canonical form (no 老老旧小区).
    for canon in set(table.values()):
        if any(v in canon for v, c in table.items() if c == canon):
            table.setdefault(canon, canon)
    parts = []
    for k in sorted(table, key=len, reverse=True):
        # Latin variants match whole words only. Not \b: between a CJK character and a Latin letter
        # \b never fires in Python's re (both are \w), so "修elevator" would be missed.
        parts.append(r"(?<![a-z])" + re.escape(k) + r"(?![a-z])" if k.isascii() else re.escape(k))
    return re.compile("|".join(parts)), table


# 「不是X(，)(而/就)是Y」 and 「Y，(而)不是X」: the negated clause X is dropped (it is what the
# resident is NOT asking about, yet it is often the strongest exact hit). Not 是不是 (a question).
_CLAUSE = r"[^,;.!?。，；！？\n]"
_NEG_FIRST_RE = re.compile(r"(?<!是)不是" + _CLAUSE + r"{1,24}?[,，\s]*(?:而|就|只)?是(?!不是)")
_NEG_AFTER_RE = re.compile(r"(?<=" + _CLAUSE + r")[,，]\s*(?:而|也|并|可)?不是" + _CLAUSE + r"{1,24}")


# 「不是X，Y」「不用解释X，我就想Y」「不是问X，我要Y」: an opening clause that says what the resident is
# NOT asking, followed by the one they are asking (not 不是很/不是太: "not very").
_NEG_LEAD_RE = re.compile(r"^\s*(?:并|倒|也)?(?:不是(?![很太特挺])|不用|不必|不问|不想问|别(?![人的处家样]))" + _CLAUSE + r"{1,24}[,，;；]\s*(?=" + _CLAUSE + r"{4})")


def drop_negated(text: str) -> str:
    """``text`` without the negated clause of a 不是X是Y / Y，不是X / 不是X，Y contrast (unchanged otherwise)."""
    lead = _NEG_LEAD_RE.sub("", text)
    if lead != text and lead.strip(" ,，。.!！?？"):
        text = lead
    if "不是" not in text:
        return text
    out = _NEG_FIRST_RE.sub(" ", text)
    out = _NEG_AFTER_RE.sub(" ", out)
    return out if out.strip(" ,，。.!！?？") else text


def _base(text: str) -> str:
    """Script, width, case, negated clauses, particles, fillers, punctuation, spaces — no synonyms."""
    text = drop_negated(unicodedata.normalize("NFKC", to_simplified(text)).lower())
    text = _EMOJI_RE.sub(" ", text)
    text = _FILLER_RE.sub(" ", text)
    text = _PARTICLE_RE.sub(" ", text)
    if not text.isascii() or any(c.isalpha() for c in text):
        text = _EN_FILLER_RE.sub(" ", text)
    text = _PUNCT_RE.sub(" ", text)
    text = _PARTICLE_RE.sub(" ", text)  # particles that only now sit at a clause end
    text = _SPACE_RE.sub(" ", text).strip()
    return _CJK_SPACE_RE.sub("", text)


@lru_cache(maxsize=4096)
def normalize(text: str) -> str:
    """Normalised form of ``text`` used for indexing and matching (may be empty)."""
    text = _base(text)
    rx, table = _synonym_re()
    if rx is not None and text:
        text = rx.sub(lambda m: table[m.group(0)], text)
    return text


# 「吃了吗」 is a greeting, not a question about meals (the elderly-meals entry's wordings say 吃饭).
_EATEN_RE = re.compile(r"^(?:你|您|你们)?(?:今天)?吃(?:饭|过饭|过|早饭|午饭|晚饭)?了(?:吗|没|没有|么|嘛)?$")


_CHITCHAT_MAX = 12  # characters: longer than any CHITCHAT word or 「吃了吗」 greeting


def is_chitchat(text: str) -> bool:
    """True when the raw text is only greetings/thanks/acknowledgements (or nothing)."""
    rough = _PUNCT_RE.sub(" ", _EMOJI_RE.sub(" ", unicodedata.normalize("NFKC", text)))
    if any(len(w) > _CHITCHAT_MAX for w in rough.split()):
        return False  # a word longer than any greeting: not chit-chat (and no Traditional→Simplified pass)
    t = unicodedata.normalize("NFKC", to_simplified(text)).lower()
    t = _EMOJI_RE.sub(" ", t)
    t = _PUNCT_RE.sub(" ", t).strip()
    if _EATEN_RE.match(t.replace(" ", "")):
        return True
    for variant in (t, _PARTICLE_RE.sub(" ", t).strip()):
        words = variant.split()
        if not words or all(w in CHITCHAT for w in words) or "".join(words) in CHITCHAT:
            return True
    return False


# A long message often mentions another topic in passing before it asks what it means to ask.
# ``focus`` finds the clause that carries the question and drops clauses the resident dismisses
# themselves (「这个先不提」「这都不说了」「我也理解」).
_CLAUSE_RE = re.compile(r"[^,;.!?。，；！？\n…~～]+[,;.!?。，；！？\n…~～]*")
_ASK_RE = re.compile(
    r"怎么|怎样|如何|咋|能不能|能否|可不可以|可以吗|是否|要不要|需不需要|该不该|用不用|合不合|有没有|哪里|哪儿|"
    r"哪个|哪些|找谁|谁来|谁管|归谁|什么|多久|多长时间|几天|吗|么[?？]|[?？]|\b(?:how|what|where|who|when|can|should)\b")
_PASSING_RE = re.compile(
    r"不重要|先不提|不说了|不提了|先不说|就忍了|能理解|我理解|不用操心|还行|挺好|挺方便|挺幸运|很满意|也恢复了|"
    r"倒是|算了|无所谓|没关系|就不说了|另说")
FOCUS_MIN_CHARS = 30   # shorter messages are matched whole
FOCUS_WINDOW = 36      # characters of clauses kept before (and with) the asking clause


def focus(text: str) -> tuple[str, str] | None:
    """``(message without the clauses dismissed in passing, the clause that asks with the one before
    it)`` for a long message of three clauses or more; ``None`` for a short one."""
    clauses = [c.strip() for c in _CLAUSE_RE.findall(text) if c.strip()]
    if len(clauses) < 3 or len(text) < FOCUS_MIN_CHARS:
        return None
    keep: list[str] = []
    for c in clauses:
        if _PASSING_RE.search(c):
            if len(c) <= 9 and keep:  # a bare 「这个先不提」 dismisses the clause before it
                keep.pop()
            continue
        keep.append(c)
    if not keep:
        return None
    asks = [i for i, c in enumerate(keep) if _ASK_RE.search(c.lower())]
    ask = asks[-1] if asks else len(keep) - 1
    start = ask
    while start > 0 and (start == ask or sum(map(len, keep[start:ask + 1])) < FOCUS_WINDOW):
        start -= 1  # the clauses just before the ask usually name its topic (「这种车能不能弄走」)
    return "".join(keep), "".join(keep[start:ask + 1])
