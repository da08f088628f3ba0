"""Fusing rankings and pooling evidence per document (plain numbers, no model)."""

import numpy as np

from rag.retrieval.fusion import Ranking, fuse_ranks, fuse_scores, pool_documents

WEIGHTS = {"dense": 0.5, "bigrams": 4.0}


def _dense(order: list[int]) -> Ranking:
    return Ranking(np.array(order), np.linspace(0.9, 0.8, len(order)))


def test_weak_lexical_evidence_leaves_the_decision_to_the_dense_ranking():
    dense = _dense([1, 2, 3, 4, 5, 6])
    weak = Ranking(np.array([6, 5]), np.array([0.4, 0.3]), ideal=20.0)  # 2 % of the ideal score
    fused = fuse_scores({"dense": dense, "bigrams": weak}, WEIGHTS)
    assert max(fused, key=fused.get) == 1


def test_strong_lexical_evidence_overrides_the_dense_order():
    dense = _dense([1, 2, 3, 4, 5, 6])
    strong = Ranking(np.array([6, 5]), np.array([9.0, 3.0]), ideal=12.0)  # 75 % of the ideal score
    fused = fuse_scores({"dense": dense, "bigrams": strong}, WEIGHTS)
    assert max(fused, key=fused.get) == 6
    assert set(fused) == {1, 2, 3, 4, 5, 6}


def test_reciprocal_rank_fusion_adds_weight_over_k_plus_rank():
    fused = fuse_ranks({"dense": _dense([1, 2]), "bigrams": Ranking(np.array([2]), np.array([1.0]), 5.0)}, WEIGHTS, 10)
    assert fused[1] == 0.5 / 11
    assert fused[2] == 0.5 / 12 + 4.0 / 11


def test_pooling_lifts_the_document_with_several_good_chunks_and_keeps_their_order():
    document = {1: "one-good-chunk", 2: "many", 3: "many", 4: "many"}
    scores = {1: 1.0, 2: 0.9, 3: 0.8, 4: -0.2}
    pooled = pool_documents(scores, document.get, weight=0.5, damping=0.5)
    assert pooled[1] == 1.0
    assert pooled[2] == 0.9 + 0.5 * (0.8 * 0.5 + 0.0 * 0.25)
    assert pooled[2] > pooled[1] and pooled[2] > pooled[3] > pooled[4]
    assert pool_documents(scores, document.get, weight=0.0, damping=0.5) == scores
