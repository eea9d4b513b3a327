"""The sampler is seeded and resumable: a resumed run sees exactly the batches of an uninterrupted one."""

import pytest
import torch
from torch.utils.data import Dataset

from verl.data import ResumableSampler, StatefulDataLoader, create_rl_sampler


class Numbers(Dataset):
    def __init__(self, n):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return torch.tensor(i)


def batches(loader, n_batches):
    """The next ``n_batches`` batches, crossing epoch boundaries the way a trainer's epoch loop does."""
    out = []
    while len(out) < n_batches:
        for batch in loader:
            out.append(batch.tolist())
            if len(out) == n_batches:
                break
    return out


def make_loader(n=10, batch_size=3, seed=7, shuffle=True, num_workers=0, drop_last=True):
    return StatefulDataLoader(Numbers(n), batch_size, ResumableSampler(n, shuffle=shuffle, seed=seed),
                              num_workers=num_workers, drop_last=drop_last)  # fmt: skip


def test_epochs_are_seeded_permutations():
    s = ResumableSampler(10, shuffle=True, seed=3)
    e0, e1 = s.order(0), s.order(1)
    assert sorted(e0.tolist()) == list(range(10)) and not (e0 == e1).all()
    assert (ResumableSampler(10, seed=3).order(1) == e1).all()  # same seed, same order
    assert not (ResumableSampler(10, seed=4).order(0) == e0).all()
    assert ResumableSampler(5, shuffle=False).order(3).tolist() == [0, 1, 2, 3, 4]


def test_drop_last_epoch_structure():
    loader = make_loader()
    assert len(loader) == 3
    epoch0 = [b.tolist() for b in loader]
    assert len(epoch0) == 3 and all(len(b) == 3 for b in epoch0)
    flat = sum(epoch0, [])
    assert len(set(flat)) == 9 and flat == loader.sampler.order(0)[:9].tolist()
    assert loader.state_dict() == {"epoch": 1, "position": 0, "seed": 7}
    # breaking right after an epoch's last batch already counts the epoch as done
    fresh = make_loader()
    assert len(batches(fresh, 3)) == 3 and fresh.state_dict()["epoch"] == 1
    assert len(batches(fresh, 1)) == 1 and fresh.state_dict() == {"epoch": 1, "position": 3, "seed": 7}


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize("stop_after", [1, 3, 4, 7])
def test_resume_equals_uninterrupted(stop_after, drop_last):
    total = 9  # about three epochs
    reference = batches(make_loader(drop_last=drop_last), total)
    if not drop_last:
        assert [len(b) for b in reference[:4]] == [3, 3, 3, 1]
    first = make_loader(drop_last=drop_last)
    seen = batches(first, stop_after)
    state = first.state_dict()
    resumed = make_loader(drop_last=drop_last)  # a fresh process: new loader, state restored
    resumed.load_state_dict(state)
    assert seen + batches(resumed, total - stop_after) == reference


def test_resume_with_prefetching_workers():
    # workers prefetch batches ahead; the saved position must count only the batches handed out
    reference = batches(make_loader(n=24, batch_size=4), 8)
    first = make_loader(n=24, batch_size=4, num_workers=2)
    seen = batches(first, 2)
    resumed = make_loader(n=24, batch_size=4, num_workers=0)
    resumed.load_state_dict(first.state_dict())
    assert seen + batches(resumed, 6) == reference


def test_state_validation():
    s = ResumableSampler(10, seed=1)
    with pytest.raises(ValueError, match="seed"):
        s.load_state_dict({"epoch": 0, "position": 0, "seed": 2})
    with pytest.raises(ValueError, match="position"):
        s.load_state_dict({"epoch": 0, "position": 11, "seed": 1})
    with pytest.raises(ValueError, match="batch_size"):
        StatefulDataLoader(Numbers(3), 0)


def test_create_rl_sampler_from_config():
    s = create_rl_sampler({"shuffle": False, "seed": 5}, Numbers(4))
    assert list(s) == [0, 1, 2, 3] and s.seed == 5
    assert create_rl_sampler({"seed": 5}, Numbers(4)).shuffle
