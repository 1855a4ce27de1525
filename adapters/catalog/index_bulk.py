"""Building the catalog index from many rows at once, in numpy.

Adding 100,000 datasets posting by posting costs ~60 µs of Python each (BM25
per word, list appends); here Python only splits the text and maps words to
ids (C-level calls), and numpy counts, weighs and groups the ~3 million
postings. The arithmetic is the incremental path's, operation for operation,
so both give bit-identical impacts (tests/integration/test_rebuild.py).
"""

from __future__ import annotations

from array import array
from typing import TYPE_CHECKING

import msgspec
import numpy as np
from pyroaring import BitMap

from adapters.catalog.index import FIELDS, K1, B, Doc, Postings, Tenant, fold
from adapters.catalog.sql import word_list

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adapters.catalog.index import IndexRecord

_decode = msgspec.json.decode
_WEIGHTS = np.array([w for _, w, _ in FIELDS])
_NORMS = np.array([n for _, _, n in FIELDS])


class _Vocabulary(dict[str, int]):
    """Word -> id, numbering new words as they come."""

    def __missing__(self, word: str) -> int:
        self[word] = n = len(self)
        return n


def build(records: Sequence[IndexRecord], docs: dict[int, Doc]) -> Tenant:
    """One tenant's index from its rows (each rid once); fills ``docs``."""
    tenant = Tenant()
    vocabulary = _Vocabulary()
    ids: list[int] = []
    lengths: list[int] = []
    cells: dict[tuple[str, str], list[int]] = {}
    rids = [r[0] for r in records]
    lookup = vocabulary.__getitem__
    for rid, tenant_id, position, status, name, description, *rest in records:
        lic, region, purposes, tags, columns, contract = rest
        tag_list = _decode(tags)
        texts = (name, description, " ".join(tag_list),
                 " ".join(c[0] for c in _decode(columns)))  # fmt: skip
        for text in texts:
            tokens = word_list(fold(text))
            lengths.append(len(tokens))
            ids.extend(map(lookup, tokens))
        doc_cells = (("status", status), ("license", lic), ("region", region),
                     *(("purpose", p) for p in _decode(purposes)),
                     *(("tag", t) for t in tag_list),
                     ("contractStatus", contract))  # fmt: skip
        for cell in doc_cells:
            cells.setdefault(cell, []).append(rid)
        docs[rid] = Doc(position, tenant_id, name, doc_cells, None)
    tenant.all = _bitmap(np.array(rids, dtype=np.uint32))
    tenant.cells = {
        cell: _bitmap(np.array(r, dtype=np.uint32)) for cell, r in cells.items()
    }
    tenant.by_name = sorted((r[4], r[0]) for r in records)
    words = list(vocabulary)
    _postings(tenant, words, np.array(rids, dtype=np.int64), ids, lengths)
    tenant.vocabulary = sorted(words)
    return tenant


def _postings(
    tenant: Tenant,
    words: list[str],
    rids: np.ndarray,
    ids: list[int],
    lengths: list[int],
) -> None:
    """Every word's (rid, impact) postings, from the flat token ids."""
    n_words = max(len(words), 1)
    seg_len = np.array(lengths, dtype=np.int64)  # (doc, field) segments
    seg = np.repeat(np.arange(len(seg_len)), seg_len)  # segment of each token
    key = seg * n_words + np.array(ids, dtype=np.int64)
    uniq, tf_int = np.unique(key, return_counts=True)  # by (doc, field, word)
    seg_of, word = np.divmod(uniq, n_words)
    field = seg_of % len(FIELDS)
    tf = tf_int.astype(np.float64)
    scale = K1 * (1 - B + B * seg_len[seg_of] / _NORMS[field])
    impact = _WEIGHTS[field] * tf * (K1 + 1) / (tf + scale)
    # Sum over fields per (doc, word), in field order, as the dict path adds.
    doc_word = (seg_of // len(FIELDS)) * n_words + word
    pairs, inverse = np.unique(doc_word, return_inverse=True)
    summed = np.bincount(inverse, weights=impact)
    doc_of, word_of = np.divmod(pairs, n_words)
    order = np.argsort(word_of, kind="stable")  # by word, then doc
    bounds = np.searchsorted(word_of[order], np.arange(len(words) + 1))
    post_rids = rids[doc_of[order]]
    post_imps = summed[order]
    for i, w in enumerate(words):
        lo, hi = bounds[i], bounds[i + 1]
        postings = Postings()
        chunk = post_rids[lo:hi]
        postings.rids = array("I", chunk.astype(np.uint32).tobytes())
        postings.imps = array("d", post_imps[lo:hi].tobytes())
        postings.bitmap = _bitmap(chunk.astype(np.uint32))
        postings.cache = (chunk, post_imps[lo:hi])
        tenant.postings[w] = postings


def _bitmap(values: np.ndarray) -> BitMap:
    """A bitmap of uint32 values, handed over as one buffer."""
    buffer = array("I")
    buffer.frombytes(values.astype(np.uint32).tobytes())
    return BitMap(buffer)
