"""Episode sampling: shapes, disjointness, groups, reproducibility and errors."""

import numpy as np
import pytest

from sktransfer.meta import EpisodeSampler, sample_episode


@pytest.mark.parametrize("n_way,k_shot,n_query", [(5, 1, 15), (3, 5, 2), (2, 1, 1)])
def test_episode_shape_and_disjointness(n_way, k_shot, n_query):
    rng = np.random.RandomState(0)
    y = rng.permutation(np.repeat(np.arange(12), 20))
    sampler = EpisodeSampler(y, n_way, k_shot, n_query, random_state=0)
    for _ in range(20):
        ep = sampler.sample()
        assert len(ep.classes) == n_way == len(set(ep.classes))
        assert len(ep.support_index) == n_way * k_shot
        assert len(ep.query_index) == n_way * n_query
        assert not set(ep.support_index) & set(ep.query_index)
        for label, cls in enumerate(ep.classes):
            s = ep.support_index[ep.support_labels == label]
            q = ep.query_index[ep.query_labels == label]
            assert len(s) == k_shot and len(q) == n_query
            assert np.all(y[s] == cls) and np.all(y[q] == cls)
        assert sorted(set(ep.support_labels)) == list(range(n_way))


def test_reproducible_and_varied():
    y = np.repeat(np.arange(10), 10)
    a = [sample_episode(y, 5, 1, 2, random_state=3).support_index for _ in range(2)]
    np.testing.assert_array_equal(a[0], a[1])
    sampler = EpisodeSampler(y, 5, 1, 2, random_state=3)
    assert len({tuple(sampler.sample().classes) for _ in range(20)}) > 5


def test_groups_keep_episodes_within_one_group():
    y = np.repeat(np.arange(20), 5)
    groups = y // 5  # four alphabets of five characters
    sampler = EpisodeSampler(y, 3, 1, 2, groups=groups, random_state=0)
    seen = set()
    for _ in range(40):
        ep = sampler.sample()
        g = set(ep.classes // 5)
        assert len(g) == 1
        seen |= g
    assert seen == {0, 1, 2, 3}


def test_impossible_episodes_and_bad_arguments_raise():
    y = np.repeat(np.arange(4), 3)
    with pytest.raises(ValueError, match="n_way=5 classes"):
        sample_episode(y, 5, 1, 1)
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 4"):
        sample_episode(y, 2, 2, 2)
    with pytest.raises(ValueError, match="n_way must be >= 2"):
        sample_episode(y, 1, 1, 1)
    with pytest.raises(TypeError, match="k_shot must be an int"):
        sample_episode(y, 2, 1.5, 1)
    with pytest.raises(ValueError, match="spans several groups"):
        sample_episode(y, 2, 1, 1, groups=np.arange(12) % 2)
    with pytest.raises(ValueError, match="no group has n_way=3"):
        sample_episode(y, 3, 1, 1, groups=y // 2)
