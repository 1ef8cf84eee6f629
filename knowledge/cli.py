"""``gridbot faq match [--kb PATH] --json [QUERY …]`` — framework-neutral (no Telegram imports).

With no QUERY, reads one query a line from ``stdin`` (every line gets exactly one output line). Prints one JSON object a line::

    {"query": …, "answer_id": <id or null>, "score": <0-100>, "candidates": [{"id": …, "score": …}, …]}

``answer_id`` is null unless the bot would answer confidently. A missing or invalid knowledge base
prints one line on stderr and returns 2.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO

__all__ = ["faq_match_main", "match_record"]


def match_record(matcher, query: str) -> dict:
    m = matcher.match(query)
    return {
        "query": query,
        "answer_id": m.answer_id if m.decision == "answer" else None,
        "score": round(float(m.score), 1),
        "candidates": [{"id": cid, "score": round(float(sc), 1)} for cid, sc in m.candidates],
    }


def faq_match_main(kb: str | None, queries: list[str], stdin: TextIO, stdout: TextIO,
                   stderr: TextIO | None = None) -> int:
    from knowledge.index import Matcher
    from knowledge.loader import DEFAULT_KB_DIR, KnowledgeError

    err = stderr if stderr is not None else sys.stderr
    path = Path(kb) if kb else DEFAULT_KB_DIR
    if not path.exists():
        print(f"gridbot faq match: knowledge base not found: {path}", file=err)
        return 2
    try:
        matcher = Matcher.from_path(path)
    except KnowledgeError as e:
        print(f"gridbot faq match: invalid knowledge base: {e}", file=err)
        return 2
    source = queries if queries else (line.rstrip("\r\n") for line in stdin)
    for q in source:  # every input line gets an output line (a blank one gets answer_id null)
        stdout.write(json.dumps(match_record(matcher, q), ensure_ascii=False) + "\n")
        if not queries:
            stdout.flush()  # line by line, so it can be driven interactively through a pipe
    stdout.flush()
    return 0


if __name__ == "__main__":  # python -m knowledge.cli [--kb PATH] [--json] [QUERY …]
    import argparse

    ap = argparse.ArgumentParser(prog="gridbot faq match")
    ap.add_argument("--kb", default=None)
    ap.add_argument("--json", action="store_true", help="JSON lines output (the only format)")
    ap.add_argument("query", nargs="*")
    a = ap.parse_args()
    raise SystemExit(faq_match_main(a.kb, a.query, sys.stdin, sys.stdout))
