"""Dense search (`rag.index.dense`): exact (flat) and HNSW FAISS indexes over unit vectors."""

from __future__ import annotations

import faiss
import numpy as np
import pytest

from rag.index.dense import DenseIndex

DIMENSION = 32


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    return unit(np.random.default_rng(7).normal(size=(500, DIMENSION)))


@pytest.fixture(scope="module")
def queries(vectors) -> tuple[np.ndarray, np.ndarray]:
    """Noisy copies of 30 stored vectors, and which vector each one copies."""
    rng = np.random.default_rng(8)
    targets = rng.choice(len(vectors), size=30, replace=False)
    return unit(vectors[targets] + 0.2 * rng.normal(size=(30, DIMENSION)) / np.sqrt(DIMENSION)), targets


def test_small_indexes_are_exact_and_large_ones_hnsw(vectors):
    assert isinstance(DenseIndex.build(vectors, DIMENSION).index, faiss.IndexFlatIP)
    hnsw = DenseIndex.build(vectors, DIMENSION, hnsw_min_vectors=100)
    assert isinstance(hnsw.index, faiss.IndexHNSWFlat)
    assert hnsw.size == len(vectors)


def test_flat_and_hnsw_find_the_same_nearest_vector(vectors, queries):
    flat = DenseIndex.build(vectors, DIMENSION)
    hnsw = DenseIndex.build(vectors, DIMENSION, hnsw_min_vectors=100)
    points, targets = queries
    for query, target in zip(points, targets, strict=True):
        flat_ids, flat_scores = flat.search(query, 5)
        hnsw_ids, hnsw_scores = hnsw.search(query, 5)
        assert flat_ids[0] == hnsw_ids[0] == target
        assert flat_scores[0] == pytest.approx(hnsw_scores[0], abs=1e-5)


def test_scores_are_cosine_similarities_best_first(vectors, queries):
    index = DenseIndex.build(vectors, DIMENSION)
    query = queries[0][0]
    ids, scores = index.search(query, 10)
    assert ids.dtype == np.int64 and len(ids) == 10
    np.testing.assert_allclose(scores, vectors[ids] @ query, atol=1e-5)
    assert list(scores) == sorted(scores, reverse=True)
    assert scores[0] == pytest.approx(float(np.max(vectors @ query)), abs=1e-5)


def test_k_larger_than_the_index_returns_every_vector(vectors):
    index = DenseIndex.build(vectors[:3], DIMENSION)
    ids, _ = index.search(vectors[0], 10)
    assert sorted(ids.tolist()) == [0, 1, 2]


def test_empty_index_and_zero_k(vectors):
    empty = DenseIndex.build(np.zeros((0, DIMENSION), np.float32), DIMENSION)
    assert empty.size == 0
    assert empty.search(vectors[0], 5)[0].size == 0
    assert DenseIndex.build(vectors, DIMENSION).search(vectors[0], 0)[0].size == 0


@pytest.mark.parametrize("hnsw_min_vectors", [200_000, 100])
def test_save_and_load_round_trip(vectors, queries, tmp_path, hnsw_min_vectors):
    index = DenseIndex.build(vectors, DIMENSION, hnsw_min_vectors)
    index.save(tmp_path / "dense.faiss")
    loaded = DenseIndex.load(tmp_path / "dense.faiss")
    assert type(loaded.index) is type(index.index) and loaded.size == index.size
    for query in queries[0][:10]:
        before, after = index.search(query, 5), loaded.search(query, 5)
        np.testing.assert_array_equal(after[0], before[0])
        np.testing.assert_allclose(after[1], before[1], atol=1e-6)


def test_float64_and_flat_input_are_accepted(vectors):
    index = DenseIndex.build(vectors.astype(np.float64).ravel(), DIMENSION)
    assert index.size == len(vectors)
    assert index.search(vectors[3].astype(np.float64), 1)[0].tolist() == [3]


def test_a_full_disk_while_saving_is_an_os_error_saying_so(vectors, tmp_path):
    """FAISS's own writer raised a `RuntimeError` (`write error … (No space left on device)`), which no
    caller took for a full disk; written by Python it is `OSError(ENOSPC)`, which `rag index` and the
    page report as 磁盘空间不足."""
    import errno
    import subprocess

    disk = tmp_path / "disk"
    disk.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(disk)], capture_output=True).returncode:
        pytest.skip("cannot mount a small file system here (needs root)")
    try:
        with pytest.raises(OSError, match="No space left") as failure:
            DenseIndex.build(vectors, DIMENSION).save(disk / "dense.faiss")  # 64 KB of vectors
        assert failure.value.errno == errno.ENOSPC
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)
