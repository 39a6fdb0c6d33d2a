"""Duplicate removal and benchmark decontamination.

- A sample is an exact duplicate of an earlier one when its images (decoded-pixel hashes), normalised question and
  normalised answer are all equal; text-only samples compare question and answer only. VQA sets ask many questions
  about one image, so an image alone never makes a duplicate.
- A near duplicate has the same normalised question and every image within ``max_hamming`` bits (dHash) of the
  earlier sample's images (re-encoded, resized or slightly cropped copies).
- A training sample is contaminated when any of its images matches (exactly or within ``max_hamming``) an image of
  an evaluation benchmark, or its normalised question equals a benchmark question that is long enough to be
  specific (``min_question_words``) or belongs to a text-only item.

Near search uses the pigeonhole rule: split the hash (256 bits by default) into ``max_hamming + 1`` bands; two
hashes within ``max_hamming`` bits agree exactly on at least one band, so only bucket-mates are compared.
"""

from __future__ import annotations

import re
import unicodedata
from collections import defaultdict

__all__ = ["normalize_text", "NearHashIndex", "Deduplicator", "ContaminationIndex"]

_PUNCT = re.compile(r"[^\w\s]")


def normalize_text(text) -> str:
    """Case-, accent-width-, punctuation- and whitespace-insensitive form used for text matching."""
    if not isinstance(text, str):
        return ""
    text = unicodedata.normalize("NFKC", text).lower()
    return " ".join(_PUNCT.sub(" ", text).split())


class NearHashIndex:
    """Perceptual hashes with lookup of any stored hash within ``max_hamming`` bits."""

    def __init__(self, max_hamming: int, bits: int = 256):
        self.max_hamming = max_hamming
        self.bits = bits
        n_bands = max_hamming + 1
        edges = [round(i * bits / n_bands) for i in range(n_bands + 1)]
        self._bands = [(lo, hi) for lo, hi in zip(edges, edges[1:]) if hi > lo]
        self._buckets: list[dict[int, list[tuple[int, object]]]] = [defaultdict(list) for _ in self._bands]

    def _keys(self, h: int):
        for i, (lo, hi) in enumerate(self._bands):
            yield i, (h >> lo) & ((1 << (hi - lo)) - 1)

    def add(self, h: int, payload: object = None) -> None:
        for i, key in self._keys(h):
            self._buckets[i][key].append((h, payload))

    def matches(self, h: int) -> list[object]:
        """Payloads of stored hashes within ``max_hamming`` of ``h`` (deduplicated, insertion order)."""
        found, seen = [], set()
        for i, key in self._keys(h):
            for other, payload in self._buckets[i].get(key, ()):
                if id(payload) not in seen and bin(h ^ other).count("1") <= self.max_hamming:
                    seen.add(id(payload))
                    found.append(payload)
        return found


class Deduplicator:
    """Stateful: ``check`` returns a reason for a duplicate of an earlier ``check``-ed sample, else records it."""

    def __init__(self, near_images: bool = True, max_hamming: int = 8, bits: int = 256):
        self.near_images = near_images
        self._exact: set[tuple] = set()
        self._near = NearHashIndex(max_hamming, bits)
        self.counts = {"exact": 0, "near_image": 0}

    def check(self, exact_hashes: list[str], dhashes: list[int], question, answer) -> str | None:
        q, a = normalize_text(question), normalize_text(answer)
        key = (tuple(sorted(exact_hashes)), q, a)
        if key in self._exact:
            self.counts["exact"] += 1
            return "duplicate:exact"
        if self.near_images and dhashes:
            # The same question about near-identical images (every image near one of the earlier sample's images).
            candidates = None
            for h in dhashes:
                hits = {id(p): p for p in self._near.matches(h) if p[0] == q}
                candidates = hits if candidates is None else {k: v for k, v in candidates.items() if k in hits}
                if not candidates:
                    break
            if candidates:
                self.counts["near_image"] += 1
                return "duplicate:near_image"
        self._exact.add(key)
        if self.near_images and dhashes:
            payload = (q,)
            for h in dhashes:
                self._near.add(h, payload)
        return None


class ContaminationIndex:
    """Images and questions of evaluation benchmarks, for ``check``-ing training samples."""

    def __init__(self, max_hamming: int = 8, min_question_words: int = 8, bits: int = 256):
        self.min_question_words = min_question_words
        self._exact_images: set[str] = set()
        self._near = NearHashIndex(max_hamming, bits)
        self._questions: set[str] = set()
        self.items = 0
        self.counts = {"image": 0, "question": 0}

    def add(self, exact_hashes: list[str], dhashes: list[int], question) -> None:
        self.items += 1
        self._exact_images.update(exact_hashes)
        for h in dhashes:
            self._near.add(h, True)
        q = normalize_text(question)
        if q and (not exact_hashes or len(q.split()) >= self.min_question_words):
            self._questions.add(q)

    def check(self, exact_hashes: list[str], dhashes: list[int], question) -> str | None:
        if any(h in self._exact_images for h in exact_hashes) or any(self._near.matches(h) for h in dhashes):
            self.counts["image"] += 1
            return "contaminated:image"
        q = normalize_text(question)
        if q in self._questions and (not exact_hashes or len(q.split()) >= self.min_question_words):
            self.counts["question"] += 1
            return "contaminated:question"
        return None
