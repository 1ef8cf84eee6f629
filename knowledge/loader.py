"""Knowledge base loading and validation.

A knowledge base is a YAML file, or a folder of ``*.yaml`` files, each shaped::

    entries:
      - id: streetlight-out
        question: 路灯不亮怎么办？
        alternates: [路灯坏了找谁, …]
        answer: …
        tags: [路灯]
        question_en: The street light is out. What should I do?   # optional English
        alternates_en: [Who fixes a broken street lamp, …]
        answer_en: …

Ids must be unique across all files. Every problem raises :class:`KnowledgeError` with a
message naming the file and the entry (or the line for malformed YAML).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = ["DEFAULT_KB_DIR", "Entry", "KnowledgeError", "load_kb", "SYNONYMS_FILE"]

DEFAULT_KB_DIR = Path(__file__).parent / "data"
SYNONYMS_FILE = "synonyms.yaml"  # lives in the data folder, but is not a knowledge file


class KnowledgeError(ValueError):
    """An invalid knowledge base; the message names the file and the entry or line."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    question: str
    alternates: tuple[str, ...]
    answer: str
    tags: tuple[str, ...]
    source: str  # file name the entry came from
    question_en: str = ""
    alternates_en: tuple[str, ...] = ()
    answer_en: str = ""


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.suffix in (".yaml", ".yml") and p.name != SYNONYMS_FILE
                       and not p.name.startswith("."))
        if not files:
            raise KnowledgeError(f"{path}: no *.yaml knowledge files in this folder")
        return files
    if path.is_file():
        return [path]
    raise KnowledgeError(f"{path}: no such file or folder")


def _parse(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise KnowledgeError(f"{path.name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except OSError as e:
        raise KnowledgeError(f"{path.name}: cannot read ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown position"
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise KnowledgeError(f"{path.name}: malformed YAML at {where}: {problem}") from None


def _text(value: Any, field: str, where: str, *, required: bool = True) -> str:
    if value is None:
        if required:
            raise KnowledgeError(f"{where}: missing {field}")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise KnowledgeError(f"{where}: {field} must be text, not {type(value).__name__}")
    s = str(value).strip()
    if required and not s:
        raise KnowledgeError(f"{where}: empty {field}")
    return s


def _texts(value: Any, field: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise KnowledgeError(f"{where}: {field} must be a list of texts, not {type(value).__name__}")
    out = []
    for i, item in enumerate(value):
        s = _text(item, f"{field}[{i}]", where, required=False)
        if s:
            out.append(s)
    return tuple(out)


_KNOWN = {"id", "question", "alternates", "answer", "tags", "question_en", "alternates_en", "answer_en"}


def load_kb(path: str | Path) -> list[Entry]:
    """Load and validate a knowledge base (a YAML file or a folder of them)."""
    path = Path(path)
    entries: list[Entry] = []
    seen: dict[str, str] = {}
    for f in _files(path):
        data = _parse(f)
        if data is None:
            continue  # an empty file is allowed (e.g. a fresh admin_added.yaml)
        if not isinstance(data, dict) or "entries" not in data:
            raise KnowledgeError(f"{f.name}: expected a mapping with a top-level 'entries:' list")
        items = data["entries"] or []
        if not isinstance(items, list):
            raise KnowledgeError(f"{f.name}: 'entries' must be a list, not {type(items).__name__}")
        for n, item in enumerate(items, 1):
            if not isinstance(item, dict):
                raise KnowledgeError(f"{f.name}: entry #{n} must be a mapping, not {type(item).__name__}")
            raw_id = item.get("id")
            label = f"entry #{n}" if raw_id in (None, "") else f"entry #{n} (id {raw_id!s})"
            where = f"{f.name}: {label}"
            if raw_id is None or (isinstance(raw_id, str) and not raw_id.strip()):
                raise KnowledgeError(f"{where}: missing id")
            entry_id = _text(raw_id, "id", where)
            unknown = set(item) - _KNOWN
            if unknown:
                raise KnowledgeError(f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
            if entry_id in seen:
                raise KnowledgeError(f"{where}: duplicate id {entry_id!r} (already defined in {seen[entry_id]})")
            seen[entry_id] = f.name
            entries.append(Entry(
                id=entry_id,
                question=_text(item.get("question"), "question", where),
                alternates=_texts(item.get("alternates"), "alternates", where),
                answer=_text(item.get("answer"), "answer", where),
                tags=_texts(item.get("tags"), "tags", where),
                source=f.name,
                question_en=_text(item.get("question_en"), "question_en", where, required=False),
                alternates_en=_texts(item.get("alternates_en"), "alternates_en", where),
                answer_en=_text(item.get("answer_en"), "answer_en", where, required=False),
            ))
    return entries
