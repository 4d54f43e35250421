"train_model: datasets streamed from disk, run fingerprints in checkpoints, clear errors, fault injection (interrupt, corrupt, resume)."
import numpy as np
import pytest
import torch
from torch import nn
from neurocomp.training import train_model, predict, data_fingerprint
from neurocomp.cohorts import load_cohort, write_fixture_cohort

KW = dict(epochs=4, batch_size=8, lr=3e-3, patience=None, seed=0, progress=False, device="cpu")


def _data(seed, n=32):
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(n, 1, generator=g)
    return torch.randn(n, 1, 6, 6, 6, generator=g) + y[:, :, None, None, None], y


def _net(seed=1, width=2):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv3d(1, width, 3), nn.ReLU(), nn.Flatten(), nn.Linear(width * 64, 1))


class Items:
    "A plain map-style dataset (item by item, as a DataLoader sees it)."
    def __init__(self, x, y): self.x, self.y = x, y
    def __len__(self): return len(self.x)
    def __getitem__(self, i): return self.x[i], self.y[i]


def test_other_runs_checkpoint_is_refused(tmp_path):
    # issue 17 item 2: B (other data, model and lr) must not silently get A's weights and history
    xa, ya = _data(0); xb, yb = _data(7)
    ck = tmp_path / "c.pt"
    train_model(_net(0), (xa, ya), (xa[:4], ya[:4]), nn.MSELoss(), checkpoint_path=ck, **KW)
    with pytest.raises(ValueError, match=r"c.pt: this checkpoint was written by another training run \(different .*train_data"):
        train_model(_net(7), (xb, yb), (xb[:4], yb[:4]), nn.MSELoss(), checkpoint_path=ck, **{**KW, "lr": 1e-4})
    with pytest.raises(ValueError, match=r"hyper_parameters \(lr: 0.003 -> 0.0001\)"):
        train_model(_net(0), (xa, ya), (xa[:4], ya[:4]), nn.MSELoss(), checkpoint=ck, **{**KW, "lr": 1e-4})
    with pytest.raises(ValueError, match="different architecture"):
        train_model(_net(0, width=3), (xa, ya), (xa[:4], ya[:4]), nn.MSELoss(), checkpoint=ck, **KW)
    with pytest.raises(ValueError, match="differ; pass only checkpoint="):
        train_model(_net(0), (xa, ya), (xa, ya), nn.MSELoss(), checkpoint=ck, checkpoint_path=tmp_path / "other.pt", **KW)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty", "foreign"])
def test_unreadable_checkpoint_names_the_file(tmp_path, damage):
    # issue 17 item 7: never a raw BadZipFile / OSError / UnpicklingError
    x, y = _data(0); ck = tmp_path / "run.pt"
    train_model(_net(), (x, y), (x[:4], y[:4]), nn.MSELoss(), checkpoint=ck, **KW)
    if damage == "truncate": ck.write_bytes(ck.read_bytes()[: len(ck.read_bytes()) // 2])
    elif damage == "garbage": ck.write_bytes(b"PK\x03\x04" + bytes(200))
    elif damage == "empty": ck.write_bytes(b"")
    else: torch.save({"weights": torch.zeros(2)}, ck)
    with pytest.raises(ValueError, match=r"run.pt: .*([Dd]elete it)"):
        train_model(_net(), (x, y), (x[:4], y[:4]), nn.MSELoss(), checkpoint=ck, **{**KW, "epochs": 6})


def test_fault_injection_interrupt_resume_and_corrupt(tmp_path):
    x, y = _data(0); ck = tmp_path / "f.pt"
    full, model_full = train_model(_net(), (x, y), (x[:8], y[:8]), nn.MSELoss(), **{**KW, "epochs": 5})
    calls = {"n": 0}
    def interrupted_loss(out, target):  # dies in the middle of epoch 3
        calls["n"] += 1
        if calls["n"] == 2 * 4 + 2: raise KeyboardInterrupt
        return nn.functional.mse_loss(out, target)
    class Loss(nn.Module):  # same repr as the resumed run's loss, so the fingerprint matches
        def forward(self, out, target): return interrupted_loss(out, target)
        def __repr__(self): return "MSELoss()"
    with pytest.raises(KeyboardInterrupt):
        train_model(_net(), (x, y), (x[:8], y[:8]), Loss(), checkpoint=ck, **{**KW, "epochs": 5})
    assert ck.exists() and not list(tmp_path.glob(".f.pt.*"))  # the last complete epoch, no stray temporary file
    resumed, model_resumed = train_model(_net(), (x, y), (x[:8], y[:8]), nn.MSELoss(), checkpoint=ck, **{**KW, "epochs": 5})
    assert np.allclose(resumed.val_loss, full.val_loss, rtol=1e-5)  # same result as uninterrupted
    for a, b in zip(model_full.state_dict().values(), model_resumed.state_dict().values()): assert torch.allclose(a, b, atol=1e-6)
    ck.write_bytes(ck.read_bytes()[:-100])  # corrupt the last checkpoint: a clear refusal
    with pytest.raises(ValueError, match="f.pt: the training checkpoint cannot be read"):
        train_model(_net(), (x, y), (x[:8], y[:8]), nn.MSELoss(), checkpoint=ck, **{**KW, "epochs": 6})


def test_streamed_dataset_trains_like_tensors_with_workers():
    x, y = _data(3)
    mem, _ = train_model(_net(), (x[:24], y[:24]), (x[24:], y[24:]), nn.MSELoss(), **KW)
    streamed, model = train_model(_net(), Items(x[:24], y[:24]), Items(x[24:], y[24:]), nn.MSELoss(), n_workers=1, **KW)
    assert np.allclose(mem.val_loss, streamed.val_loss, rtol=1e-5)
    assert np.allclose(predict(model, Items(x[24:], y[24:]), n_workers=0), predict(model, x[24:]), atol=1e-6)


def test_non_finite_inputs_are_named_not_blamed_on_lr():
    # issue 17 item 9: +inf images gave "loss became nan ... lower lr"
    x, y = _data(0); x[3, 0, 2, 2, 2] = float("inf")
    with pytest.raises(ValueError, match=r"images contain non-finite values \(NaN or ±inf\) in item\(s\) \[3\]"):
        train_model(_net(), (x, y), (x[:4], y[:4]), nn.MSELoss(), **KW)
    with pytest.raises(ValueError, match=r"train_dataset images contain non-finite values .* item\(s\) \[3\]"):
        train_model(_net(), Items(x, y), Items(x[4:8], y[4:8]), nn.MSELoss(), n_workers=0, **{**KW, "batch_size": 32})
    y[5] = float("nan")
    with pytest.raises(ValueError, match="targets contain NaN"): train_model(_net(), (x[4:], y[4:]), (x[4:8], y[4:8]), nn.MSELoss(), **KW)


def test_cohort_torch_dataset_end_to_end(tmp_path):
    cohort = load_cohort(write_fixture_cohort(tmp_path / "caps", "caps", n=6, shape=(6, 6, 6)), required=["age"])
    targets = ((cohort.phenotypes.age - cohort.phenotypes.age.mean()) / cohort.phenotypes.age.std()).to_numpy()
    ds = cohort.torch_dataset(targets=targets)
    ck = tmp_path / "cohort.pt"
    h1, _ = train_model(_net(), ds, cohort.subset([0, 1]).torch_dataset(targets=targets[:2]), nn.MSELoss(), checkpoint=ck, n_workers=0, **KW)
    h2, _ = train_model(_net(), ds, cohort.subset([0, 1]).torch_dataset(targets=targets[:2]), nn.MSELoss(), checkpoint=ck, n_workers=0, **{**KW, "epochs": 5})
    assert len(h2) == 5 and np.allclose(h2.val_loss[:4], h1.val_loss)
    with pytest.raises(ValueError, match="different train_data"):  # other targets: another run
        train_model(_net(), cohort.torch_dataset(targets=-targets), cohort.subset([0, 1]).torch_dataset(targets=targets[:2]),
                    nn.MSELoss(), checkpoint=ck, n_workers=0, **{**KW, "epochs": 6})
    assert data_fingerprint(ds) == data_fingerprint(cohort.torch_dataset(targets=targets))


def test_shuffle_false_keeps_the_given_order_every_epoch():
    # Brueggeman 2020's train_cnn.py fits with shuffle=False: the items in the order given, every epoch
    x, y = _data(0, n=16); seen = []
    class Recording(Items):
        def __getitem__(self, i): seen.append(int(i)); return super().__getitem__(i)
    train_model(_net(), Recording(x, y), Items(x[:4], y[:4]), nn.MSELoss(), n_workers=0, shuffle=False, **{**KW, "epochs": 2})
    assert seen[1:] == list(range(16)) * 2  # seen[0]: the first item, read once for its shape
    seen.clear()
    train_model(_net(), Recording(x, y), Items(x[:4], y[:4]), nn.MSELoss(), n_workers=0, shuffle=True, **{**KW, "epochs": 2})
    assert sorted(seen[1:17]) == list(range(16)) and seen[1:17] != list(range(16))


def test_output_and_loss_mismatches_are_refused_before_training():
    x, y = _data(0, n=16); labels = (y[:, 0] > 0).long()
    with pytest.raises(ValueError, match="one output per class"):
        train_model(_net(), (x, labels), (x[:4], labels[:4]), nn.CrossEntropyLoss(), **KW)
    with pytest.raises(ValueError, match="broadcast"):
        train_model(_net(), (x, y[:, 0]), (x[:4], y[:4, 0]), nn.MSELoss(), **KW)
    with pytest.raises(ValueError, match="float targets"):
        train_model(_net(), (x, labels[:, None]), (x[:4], labels[:4, None]), nn.L1Loss(), **KW)


def test_prefetch_threads_give_the_dataloaders_results_and_its_errors():
    "prefetch=k: the same batches in the same order as in memory; a reader's error and a bad image surface in the caller."
    x, y = _data(0)
    h_memory, m_memory = train_model(_net(), (x[8:], y[8:]), (x[:8], y[:8]), nn.MSELoss(), **KW)
    h_prefetch, m_prefetch = train_model(_net(), Items(x[8:], y[8:]), Items(x[:8], y[:8]), nn.MSELoss(), prefetch=3, **KW)
    assert h_prefetch.train_loss.tolist() == h_memory.train_loss.tolist() and h_prefetch.val_loss.tolist() == h_memory.val_loss.tolist()
    assert np.array_equal(predict(m_prefetch, Items(x, y), batch_size=5, prefetch=2, device="cpu"), predict(m_memory, x, batch_size=5, device="cpu"))

    class Failing(Items):
        def __getitem__(self, i):
            if i == 13: raise OSError("disk gone at item 13")
            return super().__getitem__(i)
    with pytest.raises(OSError, match="item 13"): train_model(_net(), Failing(x, y), Items(x[:8], y[:8]), nn.MSELoss(), prefetch=2, **KW)
    bad = x.clone(); bad[6] = float("nan")
    with pytest.raises(ValueError, match=r"non-finite values .* item\(s\) \[6\]"):
        train_model(_net(), Items(bad, y), Items(x[:8], y[:8]), nn.MSELoss(), prefetch=2, **KW)
    with pytest.raises(ValueError, match="prefetch must be"): train_model(_net(), Items(x, y), Items(x, y), nn.MSELoss(), prefetch=1.5, **KW)
