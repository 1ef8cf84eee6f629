"""Knowledge base: loader validation, normalisation, the matcher on the eval set, the CLI contract."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from knowledge.cli import faq_match_main
from knowledge.index import Matcher
from knowledge.loader import DEFAULT_KB_DIR, Entry, KnowledgeError, load_kb
from knowledge.normalize import is_chitchat, normalize

ROOT = Path(__file__).resolve().parents[1]
EVAL = Path(__file__).parent / "data" / "faq_dev.yaml"

# Bars on the DEV split, a little under what the matcher reaches (bench/faq.py): 94.2 % right entry
# first, 71.8 % confident, 1.0 % confidently wrong, 1.3 % not-to-answer answered.
BAR_TOP1_OR_SUGGEST = 0.92
BAR_WRONG = 0.015
BAR_OOS_ANSWERED = 0.03
# Floors per split, a little under what bench/faq.py measured, so the figures cannot slide:
# (right first ≥, confident ≥, confidently wrong ≤, not-to-answer answered ≤). The shipped knowledge base
# has learned the dev splits' questions as alternates, so each split is measured against it *without its
# own questions* (having learned the other splits): questions it has not seen, as in production. DEV2 and
# DEV3 were each written blind as a test split, measured once, then tuned on. A split listed here whose
# file is not there yet is not collected: when a new blind split lands as tests/data/faq_test.yaml (which
# the knowledge base has not learned), measure it once with bench/faq.py and put its floor here.
DATA = Path(__file__).parent / "data"
DEV_SPLITS = ("faq_dev.yaml", "faq_dev2.yaml", "faq_dev3.yaml")
SPLIT_FLOORS = {
    "faq_dev.yaml": (0.93, 0.76, 0.01, 0.02),      # measured 95.1 %, 78.6 %, 0.3 %, 0.0 %
    "faq_dev2.yaml": (0.94, 0.70, 0.01, 0.02),     # measured 95.8 %, 72.3 %, 0.3 %, 1.2 %
    "faq_dev3.yaml": (0.92, 0.69, 0.01, 0.02),     # measured 94.7 %, 71.5 %, 0.7 %, 0.0 %
    # the third blind split, not learned, measured once after the design was frozen
    "faq_test.yaml": (0.92, 0.77, 0.01, 0.02),     # measured 93.6 %, 80.0 %, 0.4 %, 1.4 %
}


def _load_split(path: Path) -> tuple[list[tuple[str, str]], list[str]]:
    """``(in-scope [(entry id, question)], not-to-answer [question])`` of a split in either format."""
    d = yaml.safe_load(path.read_text(encoding="utf-8"))
    if "items" in d:
        return ([(str(it["expect"]), str(it["q"])) for it in d["items"] if it.get("expect")],
                [str(it["q"]) for it in d["items"] if not it.get("expect")])
    ins = [(eid, q) for eid, qs in d["in_scope"].items() for q in qs]
    return ins + [(eid, q) for eid, q in d.get("in_scope_long", [])], list(d["out_of_scope"])


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


ENTRY = """
  - id: {id}
    question: {q}
    alternates: [问法一, 问法二]
    answer: {a}
    tags: [测试]
"""


def _kb(entries: list[tuple[str, str, str]]) -> str:
    return "entries:" + "".join(ENTRY.format(id=i, q=q, a=a) for i, q, a in entries)


@pytest.fixture(scope="module")
def matcher() -> Matcher:
    return Matcher.from_path(DEFAULT_KB_DIR).build()


@pytest.fixture(scope="module")
def eval_set() -> tuple[list[tuple[str, str]], list[str]]:
    d = yaml.safe_load(EVAL.read_text(encoding="utf-8"))
    ins = [(eid, q) for eid, qs in d["in_scope"].items() for q in qs]
    ins += [(eid, q) for eid, q in d.get("in_scope_long", [])]
    return ins, list(d["out_of_scope"])


# --------------------------------------------------------------------------- loader


def test_bundled_kb_is_valid_and_large_enough():
    entries = load_kb(DEFAULT_KB_DIR)
    assert len(entries) >= 70
    assert len({e.id for e in entries}) == len(entries)
    assert len({e.source for e in entries}) >= 5
    learned = {q for f in DEV_SPLITS for _, q in _load_split(DATA / f)[0]}
    for e in entries:
        assert isinstance(e, Entry)
        written = [a for a in e.alternates if a not in learned]  # the rest are residents' wordings it learned
        assert 2 <= len(written) <= 5, e.id
        assert e.tags, e.id
        assert e.answer and e.question
    with pytest.raises(Exception):
        entries[0].id = "x"  # frozen


def test_kb_mentions_only_real_national_hotlines():
    import re

    allowed = {"110", "119", "120", "122", "12345", "12319", "12315", "12369", "96110", "95598"}
    for e in load_kb(DEFAULT_KB_DIR):
        for num in re.findall(r"(?<!\d)\d{3,}(?!\d)", e.answer):
            if num in ("24", "48", "72"):
                continue
            assert num in allowed or len(num) < 3 or int(num) < 2000, (e.id, num)


def test_single_file_and_folder(tmp_path):
    f = _write(tmp_path / "a.yaml", _kb([("x1", "路灯坏了", "请上报。")]))
    assert [e.id for e in load_kb(f)] == ["x1"]
    _write(tmp_path / "b.yaml", _kb([("x2", "井盖丢了", "请上报。")]))
    _write(tmp_path / "synonyms.yaml", "synonyms: {路灯: [路登]}\n")  # not a knowledge file
    es = load_kb(tmp_path)
    assert [(e.id, e.source) for e in es] == [("x1", "a.yaml"), ("x2", "b.yaml")]
    assert es[0].alternates == ("问法一", "问法二") and es[0].tags == ("测试",)


def test_duplicate_id_across_files_names_both_files(tmp_path):
    _write(tmp_path / "a.yaml", _kb([("dup", "路灯坏了", "请上报。")]))
    _write(tmp_path / "b.yaml", _kb([("ok", "井盖", "请上报。"), ("dup", "垃圾", "请上报。")]))
    with pytest.raises(KnowledgeError) as ei:
        load_kb(tmp_path)
    msg = str(ei.value)
    assert "b.yaml" in msg and "a.yaml" in msg and "dup" in msg and "#2" in msg


def test_empty_answer_names_file_and_entry(tmp_path):
    _write(tmp_path / "a.yaml", _kb([("good", "路灯坏了", "请上报。"), ("bad-one", "井盖丢了", '""')]))
    with pytest.raises(KnowledgeError) as ei:
        load_kb(tmp_path)
    msg = str(ei.value)
    assert "a.yaml" in msg and "bad-one" in msg and "answer" in msg


def test_empty_question_and_missing_id(tmp_path):
    _write(tmp_path / "q.yaml", _kb([("q1", '"  "', "答案")]))
    with pytest.raises(KnowledgeError, match=r"q\.yaml.*q1.*question"):
        load_kb(tmp_path / "q.yaml")
    _write(tmp_path / "m.yaml", "entries:\n  - question: 问题\n    answer: 答案\n")
    with pytest.raises(KnowledgeError, match=r"m\.yaml.*#1.*missing id"):
        load_kb(tmp_path / "m.yaml")


def test_malformed_yaml_names_file_and_line(tmp_path):
    _write(tmp_path / "broken.yaml", "entries:\n  - id: a\n    question: [unclosed\n    answer: x\n")
    with pytest.raises(KnowledgeError) as ei:
        load_kb(tmp_path)
    msg = str(ei.value)
    assert "broken.yaml" in msg and "line" in msg
    import re

    assert re.search(r"line \d+", msg)


def test_wrong_types(tmp_path):
    _write(tmp_path / "t.yaml", "entries:\n  - id: t1\n    question: 问题\n    answer: 答案\n    alternates: {a: 1}\n")
    with pytest.raises(KnowledgeError, match=r"t\.yaml.*t1.*alternates"):
        load_kb(tmp_path)
    _write(tmp_path / "t.yaml", "entries: {id: x}\n")
    with pytest.raises(KnowledgeError, match=r"t\.yaml.*list"):
        load_kb(tmp_path)
    _write(tmp_path / "t.yaml", "- just a list\n")
    with pytest.raises(KnowledgeError, match=r"t\.yaml.*entries"):
        load_kb(tmp_path)
    _write(tmp_path / "t.yaml", "entries:\n  - id: t2\n    question: 问题\n    answer: [a, b]\n")
    with pytest.raises(KnowledgeError, match=r"t\.yaml.*t2.*answer"):
        load_kb(tmp_path)


def test_missing_path(tmp_path):
    with pytest.raises(KnowledgeError, match="no such file"):
        load_kb(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(KnowledgeError, match="no"):
        load_kb(tmp_path / "empty")


# --------------------------------------------------------------------------- normalisation


def test_traditional_to_simplified():
    assert normalize("路燈壞了") == "路灯坏了"
    assert normalize("請問井蓋丟了怎麼辦？") == normalize("请问井盖丢了怎么办?")


def test_full_width_case_and_punctuation():
    assert normalize("ＡＢＣ　１２３！") == "abc 123"
    assert normalize("【路灯】不亮！！！") == "路灯不亮"
    assert normalize("Hello, WORLD...") == "world"  # "hello" is a filler


def test_fillers_and_particles():
    assert normalize("你好，请问一下路灯不亮吗？") == "路灯不亮"
    assert normalize("麻烦问一下垃圾怎么分类呢") == "垃圾怎么分类"
    assert normalize("你好") == "" and normalize("在吗？") == ""
    assert normalize("这是什么") == "这是什么"  # 么 is not a particle


def test_synonyms_fix_typos():
    assert normalize("路登坏了") == normalize("路灯坏了")
    assert normalize("拉圾没人清") == normalize("垃圾没人清")
    assert normalize("电瓶车飞线充电") == normalize("电动车飞线充电")


def test_chitchat_detection():
    for q in ("你好", "谢谢！", "辛苦了", "好的👍", "OK", "hello", "在吗？？"):
        assert is_chitchat(q), q
    assert not is_chitchat("路灯坏了")


def test_normalize_is_fast():
    normalize.cache_clear()
    t = time.perf_counter()
    for i in range(500):
        normalize(f"請問一下，我家門口的路燈壞了{i}天了怎麼辦呢？")
    assert (time.perf_counter() - t) / 500 < 0.002


# --------------------------------------------------------------------------- matcher


def test_eval_set_shape(eval_set):
    ins, oos = eval_set
    assert len(ins) >= 260 and len(oos) >= 60
    ids = {e.id for e in load_kb(DEFAULT_KB_DIR)}
    assert {eid for eid, _ in ins} <= ids


def test_matcher_accuracy_on_eval_set(matcher, eval_set):
    ins, oos = eval_set
    answered_ok = top_ok = wrong = 0
    failures = []
    for eid, q in ins:
        m = matcher.match(q)
        assert 0 <= m.score <= 100 and len(m.candidates) <= 3
        if m.decision == "answer":
            assert m.answer_id is not None
            answered_ok += m.answer_id == eid
            top_ok += m.answer_id == eid
            if m.answer_id != eid:
                wrong += 1
                failures.append(("WRONG", eid, q, m.answer_id))
        elif m.decision == "suggest":
            assert m.answer_id is None and m.candidates
            top_ok += m.candidates[0][0] == eid
        else:
            assert m.answer_id is None
    oos_answered = [q for q in oos if matcher.match(q).decision == "answer"]
    n = len(ins)
    print(f"\nFAQ eval ({n} in-scope, {len(oos)} out-of-scope): answered correctly {answered_ok / n:.1%}, "
          f"answer-or-first-suggestion {top_ok / n:.1%}, confidently wrong {wrong / n:.1%}, "
          f"out-of-scope answered {len(oos_answered) / len(oos):.1%}")
    for f in failures:
        print("  ", *f)
    assert top_ok / n >= BAR_TOP1_OR_SUGGEST
    assert wrong / n <= BAR_WRONG
    assert len(oos_answered) / len(oos) <= BAR_OOS_ANSWERED, oos_answered


@pytest.mark.parametrize("q", ["你好", "您好！", "在吗", "在吗？？？", "hello", "Hi!", "谢谢", "谢谢你！", "多谢",
                               "辛苦了", "辛苦啦", "thanks", "好的", "收到", "ok", "👍", "哈哈哈", "", "   ", "？？",
                               "早上好", "再见", "你好，在吗？", "謝謝", "今天天气怎么样", "讲个笑话"])
def test_greetings_and_chatter_never_answered(matcher, q):
    m = matcher.match(q)
    assert m.decision != "answer" and m.answer_id is None


def test_clear_questions_are_answered(matcher):
    for q, eid in [("路灯坏了", "streetlight-out"), ("井盖子丢了", "manhole-cover"), ("拉圾没人清", "garbage-not-cleared"),
                   ("飛線充電很危險", "ebike-flying-wire"), ("怎么切换语言", "bot-lang")]:
        m = matcher.match(q)
        assert (m.decision, m.answer_id) == ("answer", eid), (q, m)
        assert m.candidates[0][0] == eid


def test_unknown_topic_and_long_input(matcher):
    assert matcher.match("比特币现在多少钱").decision != "answer"
    m = matcher.match("路灯" * 2000)  # over-long input is cut, not crashing
    assert m.decision in ("answer", "suggest", "unknown")


def test_matcher_from_entries_and_small_kb(tmp_path):
    f = _write(tmp_path / "k.yaml", _kb([("lamp", "路灯不亮怎么办", "请 /report 上报。"),
                                         ("cover", "井盖丢了怎么办", "请 /report 上报。")]))
    m = Matcher.from_path(f)
    assert len(m) == 2 and [e.id for e in m.entries] == ["lamp", "cover"]
    assert m.match("路灯不亮").answer_id == "lamp"
    assert m.match("谢谢").decision == "unknown"


def test_match_latency_short_queries(matcher):
    qs = ["路灯坏了", "垃圾没人清", "井盖丢了", "广场舞太吵", "怎么上报", "停水了", "你好", "加装电梯"] * 25
    lat = []
    for q in qs:
        t = time.thread_time()  # the thread's own CPU time: other processes' load does not count
        matcher.match(q)
        lat.append(time.thread_time() - t)
    lat.sort()
    assert lat[int(0.99 * (len(lat) - 1))] < 0.02  # generous: shared CI machines; bench/faq.py measures properly


# --------------------------------------------------------------------------- CLI contract


def test_faq_match_main_queries():
    out = io.StringIO()
    rc = faq_match_main(None, ["路灯坏了", "你好"], io.StringIO(), out)
    assert rc == 0
    lines = out.getvalue().splitlines()
    assert len(lines) == 2
    a, b = (json.loads(x) for x in lines)
    assert set(a) == {"query", "answer_id", "score", "candidates"}
    assert a["query"] == "路灯坏了" and a["answer_id"] == "streetlight-out"
    assert isinstance(a["score"], (int, float)) and 0 <= a["score"] <= 100
    assert all(set(c) == {"id", "score"} for c in a["candidates"]) and len(a["candidates"]) <= 3
    assert b["answer_id"] is None
    assert "路灯坏了" in lines[0]  # ensure_ascii=False


def test_faq_match_main_stdin_one_line_each():
    out = io.StringIO()
    rc = faq_match_main(None, [], io.StringIO("垃圾分类怎么分\n谢谢\n井盖丢了\n"), out)
    assert rc == 0
    recs = [json.loads(x) for x in out.getvalue().splitlines()]
    assert [r["query"] for r in recs] == ["垃圾分类怎么分", "谢谢", "井盖丢了"]
    assert recs[1]["answer_id"] is None


def test_faq_match_main_bad_kb(tmp_path):
    err = io.StringIO()
    assert faq_match_main(str(tmp_path / "missing"), ["x"], io.StringIO(), io.StringIO(), err) == 2
    assert err.getvalue().count("\n") == 1
    _write(tmp_path / "a.yaml", _kb([("d", "路灯", "答")]))
    _write(tmp_path / "b.yaml", _kb([("d", "井盖", "答")]))
    err = io.StringIO()
    out = io.StringIO()
    assert faq_match_main(str(tmp_path), ["x"], io.StringIO(), out, err) == 2
    assert "duplicate" in err.getvalue() and out.getvalue() == ""


def test_faq_match_subprocess_and_no_framework_imports(tmp_path):
    code = ("import sys; from knowledge.cli import faq_match_main; rc = faq_match_main(None, sys.argv[1:], sys.stdin, "
            "sys.stdout); bad = [m for m in sys.modules if m.split('.')[0] in ('aiogram', 'telegram', 'sqlalchemy')]; "
            "print('BAD', bad, file=sys.stderr) if bad else None; sys.exit(rc if not bad else 3)")
    p = subprocess.run([sys.executable, "-c", code], input="路登不亮\n在吗\n", capture_output=True, text=True,
                       cwd=ROOT, timeout=120, encoding="utf-8")
    assert p.returncode == 0, p.stderr
    recs = [json.loads(x) for x in p.stdout.splitlines()]
    assert recs[0]["answer_id"] == "streetlight-out" and recs[1]["answer_id"] is None
    bad = tmp_path / "bad.yaml"
    _write(bad, "entries:\n  - id: [\n")
    p = subprocess.run([sys.executable, "-c", code.replace("None", repr(str(bad))), "路灯"], capture_output=True,
                       text=True, cwd=ROOT, timeout=120, encoding="utf-8")
    assert p.returncode == 2 and p.stdout == "" and len(p.stderr.strip().splitlines()) == 1
    assert "bad.yaml" in p.stderr and "line" in p.stderr


# --------------------------------------------------------------------------- catalogs


def test_faq_catalog_keys():
    from bot.i18n import Texts, catalog

    keys = {"faq.did_you_mean", "faq.unknown", "faq.file_as_report", "faq.answer_footer", "faq.answer",
            "faq.admin_unanswered_title", "faq.admin_reloaded", "faq.admin_added", "faq.admin_usage",
            "faq.admin_reload_failed", "faq.admin_no_unanswered", "faq.ask_usage", "faq.too_long"}
    for lang in ("zh", "en"):
        assert keys <= set(catalog(lang)), lang
        t = Texts(lang)
        assert "7" in t("faq.admin_reloaded", count=7)
        assert "x-1" in t("faq.admin_added", id="x-1")
        assert "&lt;b&gt;" in t("faq.answer", question="<b>", answer="a")
        for k in keys:
            t(k, count=1, id="i", limit=5, error="e", question="q", answer="a")


# --------------------------------------------------------------------------- the blind-written splits


@pytest.mark.parametrize("split", sorted(s for s in SPLIT_FLOORS if (DATA / s).exists()))
def test_split_figures_do_not_slide(split):
    import dataclasses

    ins, n2a = _load_split(DATA / split)
    own = {q for _, q in ins}  # the split's own questions are not among the alternates it is measured against
    matcher = Matcher([dataclasses.replace(e, alternates=tuple(a for a in e.alternates if a not in own))
                       for e in load_kb(DEFAULT_KB_DIR)], cache=False).build()
    right_first = confident = wrong = 0
    for eid, q in ins:
        m = matcher.match(q)
        if m.decision == "answer":
            confident += m.answer_id == eid
            wrong += m.answer_id != eid
        first = m.answer_id if m.decision == "answer" else (m.candidates[0][0] if m.candidates else None)
        right_first += first == eid
    answered = sum(matcher.match(q).decision == "answer" for q in n2a)
    n = len(ins)
    print(f"\nFAQ {split}: right first {right_first / n:.1%}, confident {confident / n:.1%}, "
          f"wrong {wrong / n:.1%}, not-to-answer answered {answered / len(n2a):.1%}")
    floor_rf, floor_conf, ceil_wrong, ceil_n2a = SPLIT_FLOORS[split]
    assert right_first / n >= floor_rf
    assert confident / n >= floor_conf
    assert wrong / n <= ceil_wrong
    assert answered / len(n2a) <= ceil_n2a


# --------------------------------------------------------------------------- normalisation fixes


@pytest.mark.parametrize("q, kept, dropped", [
    ("不是路灯，是井盖丢了", "井盖", "路灯"),
    ("不是路灯而是井盖", "井盖", "路灯"),
    ("不是噪音的问题，就是垃圾没人收", "垃圾", "噪音"),
    ("井盖丢了，不是路灯坏了", "井盖", "路灯"),
])
def test_the_negated_clause_is_dropped(q, kept, dropped):
    n = normalize(q)
    assert kept in n and dropped not in n


def test_negation_is_not_a_question_form_and_never_empties_the_query():
    assert "路灯" in normalize("是不是路灯坏了")
    assert normalize("不是") != ""


def test_negation_and_contrast_match_what_is_asked(matcher):
    for q in ("不是路灯，是井盖丢了", "井盖丢了，不是路灯坏了"):
        m = matcher.match(q)
        first = m.answer_id or m.candidates[0][0]
        assert first == "manhole-cover", (q, m)


@pytest.mark.parametrize("q, kept, dropped", [
    ("不是物业不作为，我们小区压根没有物业", "没有物业", "作为"),
    ("不用解释门前三包是什么，我就想反映对面店门口堆的杂物", "杂物", "门前三包"),
    ("别管路灯了，井盖丢了怎么办", "井盖", "路灯"),
])
def test_an_opening_clause_saying_what_is_not_asked_is_dropped(q, kept, dropped):
    n = normalize(q)
    assert kept in n and dropped not in n


@pytest.mark.parametrize("q", ["别人在楼道堆杂物，怎么办才好", "不是很清楚，路灯坏了找谁", "不要的家具，怎么扔掉呢"])
def test_opening_clauses_that_are_not_a_negated_ask_stay(q):
    assert normalize(q).startswith(normalize(q.split("，")[0]))


def test_dialect_particles_and_a_trailing_bu_question_are_dropped():
    assert normalize("半夜三更能找你不？") == normalize("半夜三更能找你")
    assert normalize("往哪搁嘞") == normalize("往哪搁")
    assert "是不是" in normalize("是不是路灯坏了")


def test_focus_finds_the_asking_clause_and_drops_topics_dismissed_in_passing():
    from knowledge.normalize import focus

    assert focus("路灯不亮怎么办") is None  # short: matched whole
    whole, ask = focus("最近天热，小区里蚊子特别多，这个先不提。我们楼前那个污水井这两天一直往外冒黑水，"
                       "臭得不行，走路都得绕着，这种管子堵了到底找谁来通？")
    assert "蚊子" not in whole and "污水井" in whole
    assert ask.endswith("找谁来通？") and "蚊子" not in ask
    whole, ask = focus("我们单元楼下的信箱坏了好久也没人修，算了这个不重要。主要是楼梯间三楼到五楼的灯全坏了，"
                       "晚上老人上下楼只能打手机照明，这个灯到底归谁修？")
    assert "信箱" not in whole and "归谁修" in ask


def test_a_topic_mentioned_in_passing_does_not_win(matcher):
    q = ("最近天热，小区里蚊子特别多，这个先不提。我们楼前那个污水井这两天一直往外冒黑水，臭得不行，"
         "一直流到路上，走路都得绕着，这种管子堵了到底找谁来通？")
    m = matcher.match(q)
    assert (m.answer_id or m.candidates[0][0]) == "sewer-blocked", m


def test_the_lexical_fast_path_answers_without_the_encoder(matcher, monkeypatch):
    """A query the lexical path is sure about is answered without encoding it; an unsure one is not."""
    calls = []
    real = matcher.semantic.encode_query
    monkeypatch.setattr(matcher.semantic, "encode_query", lambda t: calls.append(t) or real(t))
    sure = matcher.match("垃圾分类怎么分")
    assert sure.decision == "answer" and sure.answer_id == "garbage-sorting" and calls == []
    assert 0 <= sure.score <= 100
    matcher.match("楼下那家店门口堆得跟山似的")
    assert len(calls) == 1


def test_latin_synonyms_fire_next_to_chinese_but_not_inside_words():
    assert "电梯" in normalize("小区的elevator坏了")      # \b would never fire between 的 and e
    assert "上报" in normalize("怎么report问题")
    assert "电梯" not in normalize("elevators2go")        # not inside a longer Latin word


def test_no_rewrite_inside_its_own_canonical_form():
    assert normalize("老旧小区改造") == "老旧小区改造"     # a rule 旧小区→老旧小区 must not give 老老旧小区
    assert normalize("旧小区改造") == "老旧小区改造"


def test_homophone_typos_are_corrected_against_the_kb_vocabulary(matcher):
    fix = matcher._homophones.fix
    assert fix(normalize("广场五太吵")) == "广场舞太吵"      # not in the hand-written table
    assert matcher.match("广场五太吵了").answer_id == "noise-square-dance"
    # guards: function characters and common words are never "corrected"
    assert fix("那个谁管") == "那个谁管"                     # not 哪个 / 水管
    assert fix(normalize("我想问问")) == normalize("我想问问")


def test_homophone_fixer_needs_a_unique_sound():
    from knowledge.homophone import HomophoneFixer

    f = HomophoneFixer(["公式", "公事", "路灯"])            # gongshi ×2: ambiguous, never used
    assert f.fix("公示") == "公示" and f.fix("路登") == "路灯"


# --------------------------------------------------------------------------- English, score, cache


def test_every_shipped_entry_has_english():
    for e in load_kb(DEFAULT_KB_DIR):
        assert e.question_en and e.answer_en and e.alternates_en, e.id
        assert not any("\u4e00" <= c <= "\u9fff" for c in e.answer_en), e.id


def test_english_fields_are_validated(tmp_path):
    f = _write(tmp_path / "k.yaml", "entries:\n  - id: a\n    question: 问\n    answer: 答\n    answer_en: [x]\n")
    with pytest.raises(KnowledgeError) as e:
        load_kb(f)
    assert str(e.value) == "k.yaml: entry #1 (id a): answer_en must be text, not list"
    f = _write(tmp_path / "k.yaml", "entries:\n  - id: a\n    question: 问\n    answer: 答\n    answer_en: Open daily.\n")
    assert load_kb(f)[0].answer_en == "Open daily." and load_kb(f)[0].question_en == ""


def test_english_questions_find_their_entry(matcher):
    for q, eid in [("the street light is broken", "streetlight-out"), ("I smell gas", "gas-leak"),
                   ("how do I switch the language", "bot-lang")]:
        m = matcher.match(q)
        assert (m.answer_id or m.candidates[0][0]) == eid, (q, m)


def test_score_is_a_calibrated_0_100_everywhere(matcher):
    for q in ("路灯坏了", "你好", "电梯", "比特币现在多少钱", "跑步机坏了"):
        m = matcher.match(q)
        assert 0 <= m.score <= 100 and all(0 <= s <= 100 for _, s in m.candidates)
        if m.candidates:
            assert m.score == m.candidates[0][1]  # the top candidate's probability × 100


def test_kb_vectors_are_cached_on_disk_by_kb_hash(tmp_path, monkeypatch):
    from knowledge.semantic import SemanticRanker

    monkeypatch.setenv("GRIDBOT_FAQ_CACHE", str(tmp_path))
    phr = [(0, "路灯不亮怎么办"), (0, "路灯坏了"), (1, "井盖丢了")]
    a = SemanticRanker(phr, 2).build()
    assert a.cache_hit is False and len(list(tmp_path.glob("faq-*.npy"))) == 1
    b = SemanticRanker(phr, 2).build()
    assert b.cache_hit is True
    c = SemanticRanker([*phr, (1, "井盖坏了")], 2).build()   # another KB: another key
    assert c.cache_hit is False and len(list(tmp_path.glob("faq-*.npy"))) == 2
    assert b.top(b.encode_query("路灯坏了"), 1) == {0: pytest.approx(1.0, abs=1e-4)}


def test_gridbot_faq_export_writes_linked_wordings_back(tmp_path):
    import sqlite3

    from tests.test_cli import gridbot

    env = {"GRIDBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/g.db"}
    assert gridbot("db", "upgrade", env=env).returncode == 0
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute("INSERT INTO faq_alternates (entry_id, text, added_at, added_by) "
                   "VALUES ('fitness-equipment', '跑步机坏了', '2026-11-30 10:00:00', 9100)")
    r = gridbot("faq", "export", str(tmp_path / "out"), env=env)
    assert r.returncode == 0, r.stderr
    assert "1 linked wordings added" in r.stdout
    exported = {e.id: e for e in load_kb(tmp_path / "out")}
    shipped = {e.id: e for e in load_kb(DEFAULT_KB_DIR)}
    assert exported["fitness-equipment"].alternates == shipped["fitness-equipment"].alternates + ("跑步机坏了",)
    assert exported["streetlight-out"] == shipped["streetlight-out"]  # everything else unchanged, English kept
    bad = _write(tmp_path / "bad.yaml", "entries:\n  - id: a\n    question: 问\n")
    r = gridbot("faq", "export", str(tmp_path / "out2"), "--kb", str(bad), env=env)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "bad.yaml: entry #1 (id a): missing answer" in r.stderr
