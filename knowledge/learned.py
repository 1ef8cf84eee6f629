"""The knowledge base learns: admins' links of residents' wordings, grouping, and export to YAML.

Framework-neutral (no Telegram, no database imports): the bot keeps the links in the
``faq_alternates`` table and passes them here as ``{entry id: [text, …]}``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import yaml
from rapidfuzz import fuzz

from knowledge.loader import SYNONYMS_FILE, Entry, load_kb

__all__ = ["merge_alternates", "group_similar", "export_kb", "GROUP_SIMILARITY"]

GROUP_SIMILARITY = 72.0  # rapidfuzz ratio of normalised texts at or above which two questions are one group


def merge_alternates(entries: Sequence[Entry], extra: Mapping[str, Iterable[str]]) -> list[Entry]:
    """``entries`` with the linked wordings appended to their alternates (duplicates and links to
    entries that no longer exist are skipped)."""
    if not extra:
        return list(entries)
    out = []
    for e in entries:
        more = [t for t in dict.fromkeys(extra.get(e.id, ())) if t and t != e.question and t not in e.alternates]
        out.append(dataclasses.replace(e, alternates=e.alternates + tuple(more)) if more else e)
    return out


def group_similar(items: Sequence[tuple[str, int]]) -> list[list[int]]:
    """Greedy grouping of ``[(normalised text, weight)]`` (heaviest first): an item joins the first
    group whose leader is similar enough. Returns lists of indexes into ``items``."""
    order = sorted(range(len(items)), key=lambda i: -items[i][1])
    groups: list[list[int]] = []
    for i in order:
        text = items[i][0]
        for g in groups:
            lead = items[g[0]][0]
            if text == lead or (text and lead and fuzz.ratio(text, lead) >= GROUP_SIMILARITY):
                g.append(i)
                break
        else:
            groups.append([i])
    return groups


def export_kb(src: str | Path, dest: str | Path, extra: Mapping[str, Iterable[str]]) -> dict[str, int]:
    """Write the knowledge base at ``src`` to the folder ``dest`` with the linked wordings added as
    alternates, one YAML file per source file (the synonyms table is copied as is). Returns
    ``{file name: alternates added}``."""
    src, dest = Path(src), Path(dest)
    entries = load_kb(src)
    merged = merge_alternates(entries, extra)
    dest.mkdir(parents=True, exist_ok=True)
    by_file: dict[str, list[Entry]] = {}
    for e in merged:
        by_file.setdefault(e.source, []).append(e)
    added: dict[str, int] = {}
    before = {e.id: len(e.alternates) for e in entries}
    for name, es in by_file.items():
        items = []
        for e in es:
            item: dict = {"id": e.id, "question": e.question, "alternates": list(e.alternates), "answer": e.answer}
            if e.tags:
                item["tags"] = list(e.tags)
            for f in ("question_en", "alternates_en", "answer_en"):
                v = getattr(e, f)
                if v:
                    item[f] = list(v) if isinstance(v, tuple) else v
            items.append(item)
        (dest / name).write_text(yaml.safe_dump({"entries": items}, allow_unicode=True, sort_keys=False, width=1000),
                                 encoding="utf-8")
        added[name] = sum(len(e.alternates) - before[e.id] for e in es)
    syn = (src if src.is_dir() else src.parent) / SYNONYMS_FILE
    if syn.exists() and src.is_dir():
        (dest / SYNONYMS_FILE).write_text(syn.read_text(encoding="utf-8"), encoding="utf-8")
    return added
