"""Training throughput (volumes/s) of `neurocomp.training.train_model` vs a bare torch loop on the same model and data.

Both train the Table 1 CNN (Brueggeman 2020) on the same in-memory volumes with Adam and MSE and run the same validation
pass each epoch; the runs alternate so machine contention hits both alike. Goal: train_model within 1.2x of the bare loop
that uses the same memory format (channels-last-3D); the plain contiguous bare loop is printed too.

    python benchmarks/training_benchmark.py [--shape 61 73 61] [--width 0.25] [--n 48] [--epochs 2] [--repeats 3]
"""
import argparse, time
import numpy as np
import torch
from torch import nn
from neurocomp.training import train_model
from neurocomp.sexdiff.methods import brueggeman_cnn


def bare_loop(model, x, y, xv, yv, epochs, batch_size, lr, channels_last, seed=0):
    "The minimal loop: shuffle, slice, forward, MSE, backward, step; then a no-grad validation pass."
    torch.manual_seed(seed)
    if channels_last:
        model = model.to(memory_format=torch.channels_last_3d)
        x = x.contiguous(memory_format=torch.channels_last_3d); xv = xv.contiguous(memory_format=torch.channels_last_3d)
    opt = torch.optim.Adam(model.parameters(), lr=lr); loss_fn = nn.MSELoss()
    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(x)).split(batch_size):
            loss = loss_fn(model(x[idx]), y[idx]); opt.zero_grad(); loss.backward(); opt.step()
        model.eval()
        with torch.no_grad():
            for s in range(0, len(xv), batch_size): loss_fn(model(xv[s:s + batch_size]), yv[s:s + batch_size])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[61, 73, 61]); ap.add_argument("--width", type=float, default=0.25)
    ap.add_argument("--n", type=int, default=48); ap.add_argument("--n-val", type=int, default=8)
    ap.add_argument("--batch-size", type=int, default=8); ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(a.n, 1, *a.shape, generator=g); y = torch.randn(a.n, 1, generator=g)
    xv = torch.rand(a.n_val, 1, *a.shape, generator=g); yv = torch.randn(a.n_val, 1, generator=g)
    make = lambda: (torch.manual_seed(0), brueggeman_cnn(tuple(a.shape), width=a.width))[1]
    runs = {
        "train_model": lambda: train_model(make(), (x, y), (xv, yv), nn.MSELoss(), epochs=a.epochs, batch_size=a.batch_size,
                                           lr=1e-4, patience=None, progress=False, device="cpu" if not torch.cuda.is_available() else None),
        "bare (channels-last)": lambda: bare_loop(make(), x, y, xv, yv, a.epochs, a.batch_size, 1e-4, True),
        "bare (contiguous)": lambda: bare_loop(make(), x, y, xv, yv, a.epochs, a.batch_size, 1e-4, False),
    }
    times = {k: [] for k in runs}
    runs["bare (channels-last)"]()  # warm-up (oneDNN kernel selection)
    for _ in range(a.repeats):
        for name, fn in runs.items():
            t0 = time.perf_counter(); fn(); times[name].append(time.perf_counter() - t0)
    vols = a.n * a.epochs
    print(f"Table 1 CNN, width {a.width}, input {tuple(a.shape)}, {a.n} training + {a.n_val} validation volumes, "
          f"batch {a.batch_size}, {a.epochs} epochs, {torch.get_num_threads()} threads, best of {a.repeats}")
    best = {k: min(v) for k, v in times.items()}
    for name, t in best.items(): print(f"  {name:22s} {vols / t:7.2f} volumes/s  ({t:.2f} s)")
    print(f"ratio train_model / bare (channels-last) time: {best['train_model'] / best['bare (channels-last)']:.3f}  (goal <= 1.2)")
    print(f"ratio train_model / bare (contiguous)    time: {best['train_model'] / best['bare (contiguous)']:.3f}")


if __name__ == "__main__":
    main()
