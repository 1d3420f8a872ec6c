"""The light-layer candidates of ops/eval_layer.py on small synthetic vectors."""

from __future__ import annotations

import numpy as np

from ops.eval_layer import scatter_map, train_head


def _unit(m):
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_the_head_corrects_prototypes_that_point_the_wrong_way_and_stays_put_without_evidence():
    rng = np.random.default_rng(0)
    centroids = np.eye(4)[:2]  # prototypes on axes 0 and 1 ...
    a = _unit(np.column_stack([np.zeros(10), 0.3 + rng.random(10) * 0.1, np.ones(10), np.zeros(10)]))
    b = _unit(np.column_stack([0.3 + rng.random(10) * 0.1, np.zeros(10), np.zeros(10), np.ones(10)]))
    vectors = np.vstack([a, b])  # ... but the examples of vertical 0 lean towards prototype 1 and vice versa
    onehot = np.repeat(np.eye(2), 10, axis=0)
    assert ((vectors @ centroids.T).argmax(axis=1) != onehot.argmax(axis=1)).all()
    weights = train_head(vectors, onehot, centroids, l2=1e-3)
    assert ((vectors @ centroids.T + vectors @ weights).argmax(axis=1) == onehot.argmax(axis=1)).all()
    assert np.abs(train_head(vectors, onehot, centroids, l2=1e6)).max() < 1e-3


def test_the_scatter_map_shrinks_the_direction_examples_spread_in():
    rng = np.random.default_rng(1)
    spread = np.column_stack([rng.normal(0, 0.5, 40), np.ones(40), np.zeros(40)])  # spread along axis 0
    mapping = scatter_map(spread, np.ones((40, 1)), alpha=0.01)
    variance = np.var(spread[:, 0])  # the only within-vertical spread: sqrt(alpha / (variance + alpha)) there
    assert np.isclose(np.linalg.norm(np.array([1.0, 0, 0]) @ mapping), np.sqrt(0.01 / (variance + 0.01)), atol=0.01)
    assert np.linalg.norm(np.array([1.0, 0, 0]) @ mapping) < 0.3
    assert np.isclose(np.linalg.norm(np.array([0, 0, 1.0]) @ mapping), 1.0, atol=1e-6)
