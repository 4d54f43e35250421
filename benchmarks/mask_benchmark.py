"""Mask-optimisation speed vs a plain forward+backward of the same CNN (Thibeau-Sutre 2020 masks).

Prints mask iterations/s (one Adam update of a group mask on one image, as `optimize_mask` runs it) and plain
training-step iterations/s (forward + cross-entropy backward through the weights, batch of 1) at the quick (4 mm,
46x55x46, 5 blocks) and paper (1.5 mm, 121x145x121, 7 blocks) grids, on CPU and on CUDA when present; and the cost of
the two regularisers of eq. (2) on the paper's grid: the numba kernel `optimize_mask` uses vs the same expression in
torch autograd; and the resident memory a long mask run keeps on the paper's grid, with `optimize_mask` returning freed heap
memory (glibc malloc_trim, every 16 updates) vs the same run without it. Goals: mask step <= 1.3x the plain step; memory
flat in the number of updates. Run: `python benchmarks/mask_benchmark.py [--paper-iters N] [--memory-updates N]`.
"""
import argparse, time
import numpy as np
import torch
from torch import nn
from neurocomp.perturbation.classifier import ADClassifier
from neurocomp.perturbation.masks import optimize_mask, mask_regularization, _torch_regularization, regularization_weights


def plain_steps_per_second(model, x, iters, device):
    model = model.to(device).train()
    y = torch.ones(1, dtype=torch.long, device=device)
    loss_fn = nn.CrossEntropyLoss()
    def step(i):
        model.zero_grad(set_to_none=True)
        loss_fn(model(x[i % len(x)][None, None].to(device)), y).backward()
    step(0)  # warm-up
    if device.type == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    for i in range(iters): step(i)
    if device.type == "cuda": torch.cuda.synchronize()
    return iters / (time.perf_counter() - t)


class AlwaysAD(nn.Module):
    "Wrap the CNN so every image counts as correctly classified (the benchmark times steps, not decisions)."
    def __init__(self, net): super().__init__(); self.net = net
    def forward(self, x):
        out = self.net(x)
        return out + torch.tensor([0.0, 50.0], device=out.device) - out.detach()


def mask_steps_per_second(model, x, iters, device):
    wrapped = AlwaysAD(model).to(device).eval()
    kw = dict(lambda1=1e-4, lambda2=1e-2, beta1=0.1, beta2=1.0, max_epochs=1, patience=10, device=device, only_correct=False,
              validation_images=x[:1])
    optimize_mask(wrapped, x[:2], 1, **{**kw})  # warm-up
    if device.type == "cuda": torch.cuda.synchronize()
    t = time.perf_counter()
    optimize_mask(wrapped, x[:iters], 1, **kw)  # one epoch = `iters` updates (+ one validation forward)
    if device.type == "cuda": torch.cuda.synchronize()
    return iters / (time.perf_counter() - t)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick-iters", type=int, default=40)
    parser.add_argument("--paper-iters", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="alternating measurement rounds (best of each kept)")
    parser.add_argument("--memory-updates", type=int, default=400, help="updates of the memory comparison (0: skip it)")
    args = parser.parse_args()
    torch.manual_seed(0)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    grids = {"quick 4 mm 46x55x46": dict(shape=(46, 55, 46), filters=(4, 8, 16, 32, 32), sub_blocks=(1, 1, 2, 2, 2), iters=args.quick_iters),
             "paper 1.5 mm 121x145x121": dict(shape=(121, 145, 121), filters=None, sub_blocks=None, iters=args.paper_iters)}
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"{'grid':28s} {'device':6s} {'mask it/s':>10s} {'fwd+bwd it/s':>13s} {'mask/plain time':>16s}")
    for name, g in grids.items():
        kw = {} if g["filters"] is None else dict(filters=g["filters"], sub_blocks=g["sub_blocks"])
        for device in devices:
            iters = g["iters"] * (10 if device.type == "cuda" else 1)
            model = ADClassifier(g["shape"], **kw)
            x = torch.rand(iters, *g["shape"])
            # alternate the two measurements and keep the best of each: robust to bursts of load from other processes
            plain = mask = 0.0
            for _ in range(args.rounds):
                plain = max(plain, plain_steps_per_second(model, x, iters, device))
                mask = max(mask, mask_steps_per_second(model, x, iters, device))
            print(f"{name:28s} {device.type:6s} {mask:10.2f} {plain:13.2f} {plain / mask:15.2f}x", flush=True)
    costs = regulariser_costs()
    print("regularisers on 121x145x121 (forward + backward): " + ", ".join(f"{k} {v * 1e3:.0f} ms" for k, v in costs.items()))
    if args.memory_updates:
        growth = {name: memory_growth(args.memory_updates, trim) for name, trim in (("without malloc_trim (peer)", False), ("optimize_mask", True))}
        print(f"resident memory gained over {args.memory_updates} updates on 121x145x121: " +
              ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in growth.items()) +
              f"; peer / optimize_mask {growth['without malloc_trim (peer)'] / max(growth['optimize_mask'], 1e6):.1f}x")


class DenseReadout(nn.Module):
    "A cheap classifier with a CNN-like dense input gradient (see nbs/42): the memory comparison times no convolutions."
    def __init__(self, shape, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.psi, self.phase = 1e-3 * torch.rand(shape, generator=g), 6.283 * torch.rand(shape, generator=g)
    def forward(self, x):
        z = 8.0 + (self.psi * torch.cos(50 * x[:, 0] + self.phase)).sum((1, 2, 3)) / 50
        return torch.stack([-z / 2, z / 2], 1)


def memory_growth(updates, trim, shape=(121, 145, 121)):
    "Peak resident bytes gained by a group-mask run of `updates` updates (four images), with or without malloc_trim."
    import threading
    import neurocomp.perturbation.masks as masks
    rss = lambda: int(open("/proc/self/statm").read().split()[1]) * 4096
    x = torch.rand(4, *shape)
    model = DenseReadout(shape)
    original = masks.release_freed_memory
    if not trim: masks.release_freed_memory = lambda: False
    start, peak, done = rss(), [0], threading.Event()
    def watch():
        while not done.is_set(): peak[0] = max(peak[0], rss()); time.sleep(0.2)
    watcher = threading.Thread(target=watch, daemon=True); watcher.start()
    try: optimize_mask(model, x, 1, 1e-4, 1e-3, 0.1, 1.0, max_epochs=updates // 4, patience=updates, only_correct=False, validation_images=x[:1])
    finally: masks.release_freed_memory = original; done.set(); watcher.join()
    masks.release_freed_memory()
    return max(peak[0], rss()) - start


def regulariser_costs(rounds=3):
    "Seconds per forward+backward of the two regularisers on the paper's grid: numba kernel vs torch autograd."
    shape = (121, 145, 121)
    m = (1 - 0.3 * torch.rand(1, *shape) * (torch.rand(1, *shape) < 0.05)).clamp(0, 1)
    w_area, w_axes = regularization_weights(shape, "mean")
    out = {}
    for name, fn in (("numba kernel", lambda x: mask_regularization(x, 1e-4, 1e-2, 0.1, 1.0)),
                     ("torch autograd", lambda x: _torch_regularization(x, 0.1, 1.0, 1e-6, w_area, w_axes))):
        best = float("inf")
        for _ in range(rounds):
            x = m.clone().requires_grad_(True)
            t = time.perf_counter(); a, s = fn(x); (a.sum() + s.sum()).backward(); best = min(best, time.perf_counter() - t)
        out[name] = best
    return out


if __name__ == "__main__":
    main()
