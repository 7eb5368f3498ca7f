"""Search the archive's sketches: exact for small archives, inverted lists for large ones.

A graph over every token costs about 149 bytes per token in USearch (docs/design.md), which
alone breaks the 160 B/token budget. Instead, a small USearch index holds `nlist` centroid
sketches (k-majority clustering of a sample of the records); every record is assigned to its
nearest centroid. A query probes its `nprobe` nearest centroids and scores only their records,
exactly, by Hamming distance on the sketches in the records themselves. On disk:
2 bytes per token for the assignment and 4 for the record ids grouped by list.

Files beside the records, all rebuildable from the records alone:
    centroids.usearch   USearch B1/Hamming graph of the centroids (opened with view=True),
                        for assigning new records in bulk
    centroids.npy       the centroid sketches, scanned exactly when probing a query
    assign.u16          one list id per record, appended as records are
    postings.npy        record ids [0, n_grouped) sorted by list
    offsets.npy         where each list starts in postings
    index.json          nlist, n_grouped, how many records the centroids were trained on
Each is replaced atomically; `index.json` is written last, so a crash between writes leaves
the previous consistent set or a set that `refresh` repairs.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# ikv_local's preload has put the system C++ runtime first by now (cxx_runtime, docs/engine.md)
from usearch.index import Index, MetricKind, ScalarKind, search

from ikv_local import files
from ikv_local.archive import Archive
from ikv_local.files import write_atomic
from ikv_local.record import SKETCH_BYTES

EXACT_LIMIT = 1 << 16  # below this many records a full scan is faster than probing
TRAIN_SAMPLE_PER_LIST = 32
TRAIN_ROUNDS = 6
OUTLIER_SHARE = 0.3  # farther than this share of bits from every centroid: not covered
DEFAULT_NPROBE = 40
SKETCH_BITS = SKETCH_BYTES * 8
_INDEX_JSON = "index.json"


@dataclass(frozen=True)
class Hits:
    ids: np.ndarray  # record ids, nearest first
    distances: np.ndarray  # Hamming distances


def _nlist_for(n: int) -> int:
    """About 2·sqrt(n) lists, a power of two in [256, 16384]."""
    return int(min(1 << 14, max(256, 1 << round(np.log2(2 * np.sqrt(n))))))


def hamming_to(sketches: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """[n] min over queries of the Hamming distance from each sketch (uint8 [n, 64] or uint64 [n, 8])."""
    words = np.ascontiguousarray(sketches).view(np.uint64)
    best = np.full(len(words), SKETCH_BITS + 1, dtype=np.int16)
    for q in np.ascontiguousarray(queries).view(np.uint64):
        counts = np.bitwise_count(words ^ q)
        d = counts[:, 0].astype(np.int16)
        for i in range(1, counts.shape[1]):  # column sums beat sum(axis=1) on 8 columns
            d += counts[:, i]
        np.minimum(best, d, out=best)
    return best


def _nearest(centroids: np.ndarray, sketches: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    found = search(centroids, sketches, 1, MetricKind.Hamming, exact=True)
    keys = np.asarray(found.keys, dtype=np.int64).reshape(len(sketches), -1)[:, 0]
    dist = np.asarray(found.distances).reshape(len(sketches), -1)[:, 0]
    return keys, dist


def train_centroids(sketches: np.ndarray, nlist: int, seed: int = 0) -> np.ndarray:
    """k-majority (k-means for bit vectors) with outlier reseeding.

    Random seeds land mostly in dense regions, so a rare group of similar keys can end up with
    no centroid and its records scattered over unrelated lists. After each round, centroids
    that attract almost nothing move to the sample points farthest from every centroid.
    """
    rng = np.random.default_rng(seed)
    n_sample = min(len(sketches), nlist * TRAIN_SAMPLE_PER_LIST)
    sample = np.asarray(sketches[np.sort(rng.choice(len(sketches), n_sample, replace=False))])
    centroids = sample[rng.choice(len(sample), nlist, replace=False)].copy()
    bits = np.unpackbits(sample, axis=1)
    for _ in range(TRAIN_ROUNDS):
        labels, dist = _nearest(centroids, sample)
        order = np.argsort(labels, kind="stable")
        present, starts = np.unique(labels[order], return_index=True)
        sums = np.add.reduceat(bits[order].astype(np.int32), starts, axis=0)
        counts = np.diff(np.append(starts, len(order)))
        centroids[present] = np.packbits(sums * 2 > counts[:, None], axis=1)
        sizes = np.zeros(nlist, np.int64)
        sizes[present] = counts
        idle = np.flatnonzero(sizes < 2)
        far = np.argsort(-dist)[: len(idle)]
        far = far[dist[far] > SKETCH_BITS * OUTLIER_SHARE]
        centroids[idle[: len(far)]] = sample[far]
    return centroids


class SketchIndex:
    """The search side of an `Archive`."""

    def __init__(self, archive: Archive) -> None:
        self.archive = archive
        self.folder = archive.folder
        self.meta: dict[str, int] = {"nlist": 0, "n_grouped": 0, "trained_on": 0}
        self._centroids: Index | None = None
        self._load()

    # -- files ---------------------------------------------------------------------

    def _load(self) -> None:
        path = self.folder / _INDEX_JSON
        try:
            self.meta = {**self.meta, **json.loads(path.read_text())} if path.exists() else self.meta
            if self.meta["nlist"]:
                self._centroids = Index.restore(str(self.folder / "centroids.usearch"), view=True)
                self._offsets = np.load(self.folder / "offsets.npy")
                self._centre_bits = np.load(self.folder / "centroids.npy")
                self._postings = np.load(self.folder / "postings.npy", mmap_mode="r")
                if self._centroids is None or len(self._offsets) != self.meta["nlist"] + 1:
                    raise ValueError("index files disagree")
        except (OSError, ValueError, KeyError):
            self.meta = {"nlist": 0, "n_grouped": 0, "trained_on": 0}
            self._centroids = None  # rebuilt from the records by refresh()

    def _assign_path(self) -> Path:
        return self.folder / "assign.u16"

    def _assignments(self) -> np.ndarray:
        path = self._assign_path()
        n = path.stat().st_size // 2 if path.exists() else 0
        if n == 0:
            return np.zeros(0, np.uint16)
        return np.memmap(path, np.uint16, "r", 0, (n,))

    def _append_assign(self, labels: np.ndarray) -> None:
        files.append(self._assign_path(), labels.astype("<u2").tobytes(), create=True)

    def _save_npy(self, name: str, arr: np.ndarray) -> None:
        buf = io.BytesIO()
        np.save(buf, arr)
        write_atomic(self.folder / name, buf.getvalue())

    def disk_bytes(self) -> int:
        names = ("centroids.usearch", "centroids.npy", "assign.u16", "postings.npy", "offsets.npy",
                 _INDEX_JSON)
        return sum((self.folder / n).stat().st_size for n in names if (self.folder / n).exists())

    # -- keeping up with the records --------------------------------------------------

    @property
    def indexed(self) -> int:
        """Records the index can find (all of them after refresh)."""
        return len(self.archive) if not self.meta["nlist"] else len(self._assignments())

    def refresh(self) -> None:
        """Bring the index up to date with the records: train, assign, regroup as needed."""
        n = len(self.archive)
        if n < EXACT_LIMIT:
            return
        if not self.meta["nlist"] or n >= 16 * self.meta["trained_on"]:
            self._train(n)
            return
        assign = self._assignments()
        if len(assign) > n:  # records lost their torn tail after the index saw them
            self._regroup(np.array(assign[:n]), rewrite_assign=True)
            return
        if len(assign) < n:
            sketches = self.archive.sketches()
            labels = self._assign(np.asarray(sketches[len(assign) : n]))
            self._append_assign(labels)
        if n - self.meta["n_grouped"] > max(EXACT_LIMIT, n // 8):
            self._regroup(np.asarray(self._assignments()))

    def _assign(self, sketches: np.ndarray) -> np.ndarray:
        assert self._centroids is not None
        out = np.empty(len(sketches), np.uint16)
        for start in range(0, len(sketches), 1 << 16):
            part = sketches[start : start + (1 << 16)]
            found = self._centroids.search(part, 1, exact=False)
            out[start : start + len(part)] = np.asarray(found.keys).reshape(len(part), -1)[:, 0]
        return out

    def _train(self, n: int) -> None:
        sketches = self.archive.sketches()
        nlist = _nlist_for(n)
        centroids = train_centroids(sketches, nlist)
        index = Index(ndim=SKETCH_BITS, metric=MetricKind.Hamming, dtype=ScalarKind.B1,
                      connectivity=16, expansion_add=256, expansion_search=256)
        index.add(np.arange(nlist), centroids)
        self._save_npy("centroids.npy", centroids)
        graph = self.folder / "centroids.usearch"
        with files.guarded(graph, "write"), files.replaced(graph) as tmp:
            index.save(str(tmp))
        self._centroids = Index.restore(str(self.folder / "centroids.usearch"), view=True)
        self.meta = {"nlist": nlist, "n_grouped": 0, "trained_on": n}
        labels = self._assign(np.asarray(sketches[:n]))
        self._regroup(labels, rewrite_assign=True)

    def _regroup(self, labels: np.ndarray, rewrite_assign: bool = False) -> None:
        nlist = self.meta["nlist"]
        if rewrite_assign:
            write_atomic(self._assign_path(), labels.astype("<u2").tobytes())
        order = np.argsort(labels, kind="stable").astype(np.uint32)
        offsets = np.searchsorted(labels[order], np.arange(nlist + 1)).astype(np.int64)
        self._save_npy("postings.npy", order)
        self._save_npy("offsets.npy", offsets)
        self.meta = {**self.meta, "n_grouped": len(labels)}
        write_atomic(self.folder / _INDEX_JSON, json.dumps(self.meta).encode())
        self._load()

    def rebuild(self) -> None:
        """Throw the index away and build it again from the records alone."""
        for name in (_INDEX_JSON, "centroids.usearch", "centroids.npy", "assign.u16",
                     "postings.npy", "offsets.npy"):
            (self.folder / name).unlink(missing_ok=True)
        self.meta = {"nlist": 0, "n_grouped": 0, "trained_on": 0}
        self._centroids = None
        self.refresh()

    # -- search ----------------------------------------------------------------------

    def candidates(self, queries: np.ndarray, nprobe: int = DEFAULT_NPROBE) -> np.ndarray:
        """Record ids worth scoring exactly for these query sketches."""
        n = len(self.archive)
        if not self.meta["nlist"]:
            return np.arange(n)
        assert self._centroids is not None
        nprobe = min(nprobe, self.meta["nlist"])
        # probing is exact (a scan of nlist centroids); the graph serves bulk assignment
        found = search(self._centre_bits, queries, nprobe, MetricKind.Hamming, exact=True)
        lists = np.unique(np.asarray(found.keys).reshape(len(queries), -1))
        lists = lists[lists < self.meta["nlist"]]
        parts = [self._postings[self._offsets[i] : self._offsets[i + 1]] for i in lists]
        grouped = self.meta["n_grouped"]
        assign = self._assignments()
        if len(assign) > grouped:
            tail = np.asarray(assign[grouped:n])
            parts.append(grouped + np.flatnonzero(np.isin(tail, lists)))
        ids = np.concatenate(parts) if parts else np.zeros(0, np.int64)
        return ids[ids < n]

    def search(self, queries: np.ndarray, k: int = 64, nprobe: int = DEFAULT_NPROBE) -> Hits:
        """The k records nearest to any of the query sketches (min Hamming over queries).

        With lists, each query is scored on its own lists only: every query against the union
        of all their lists costs a question's length times more (40 ms at 1M records).
        """
        queries = np.atleast_2d(np.asarray(queries, dtype=np.uint8))
        if len(queries) == 1 or not self.meta["nlist"]:
            return self._top_k(self.candidates(queries, nprobe), queries, k)
        each = [self._top_k(self.candidates(q[None], nprobe), q[None], k) for q in queries]
        ids = np.concatenate([h.ids for h in each])
        dist = np.concatenate([h.distances for h in each])
        order = np.argsort(dist, kind="stable")
        ids, dist = ids[order], dist[order]
        _, first = np.unique(ids, return_index=True)  # a record found by several queries: its nearest
        keep = np.sort(first)[:k]
        return Hits(ids[keep], dist[keep])

    def _top_k(self, ids: np.ndarray, queries: np.ndarray, k: int) -> Hits:
        usable = self.archive.usable
        ids = ids[usable[ids]] if len(ids) else ids
        if len(ids) == 0:
            return Hits(np.zeros(0, np.int64), np.zeros(0, np.int32))
        dist = hamming_to(self.archive.sketch_words(ids), queries)
        k = min(k, len(ids))
        top = np.argpartition(dist, k - 1)[:k]
        top = top[np.argsort(dist[top], kind="stable")]
        return Hits(ids[top].astype(np.int64), dist[top].astype(np.int32))
