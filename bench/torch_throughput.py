#!/usr/bin/env python3
"""PyTorch eager training samples/s on the nets and batches of bench_throughput
(lenet: batch 128, 1x28x28; resnet20: batch 64, 3x32x32; mlp: batch 128), for the
nbsgd/PyTorch ratio in bench/gpu_check.sh. Same step as bench_throughput: forward,
softmax cross-entropy, backward, a plain SGD update. Random inputs. TF32 is off
(matmuls and cuDNN convolutions in full FP32), since nbsgd's FP32 is not TF32.

Usage: torch_throughput.py --json FILE [--device cuda|cpu] [--seconds S] [--reps R]
Exits 0 with {"skipped": reason} when torch (or the device) is missing.
"""
import argparse
import json
import statistics
import sys
import time


def nets(nn):
    def lenet():
        return nn.Sequential(
            nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
            nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, 10))

    def mlp():
        return nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 256), nn.ReLU(),
                             nn.Linear(256, 10))

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

        def forward(self, x):
            y = nn.functional.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return nn.functional.relu(y + (x if self.short is None else self.short(x)))

    def resnet20():
        layers = [nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU()]
        cin = 16
        for cout, stride in ((16, 1), (32, 2), (64, 2)):
            for i in range(3):
                layers.append(Block(cin, cout, stride if i == 0 else 1))
                cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10)]
        return nn.Sequential(*layers)

    return {"mlp": (mlp, 128, (1, 28, 28)), "lenet": (lenet, 128, (1, 28, 28)), "resnet20": (resnet20, 64, (3, 32, 32))}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--json", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--seconds", type=float, default=1.0)
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    try:
        import torch
        from torch import nn
    except ImportError:
        json.dump({"skipped": "torch is not installed"}, open(a.json, "w"))
        print("torch_throughput: skipped: torch is not installed")
        return 0
    if a.device == "cuda" and not torch.cuda.is_available():
        json.dump({"skipped": "torch sees no CUDA device"}, open(a.json, "w"))
        print("torch_throughput: skipped: torch sees no CUDA device")
        return 0
    # Full FP32 as nbsgd computes it: no TF32 in matmuls or cuDNN convolutions.
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    dev = torch.device(a.device)
    sync = torch.cuda.synchronize if a.device == "cuda" else (lambda: None)
    rows = []
    print(f"{'net':10} {'batch':>6} {'samples/s':>12} {'min':>12} {'max':>12}   torch {torch.__version__} on {a.device}, TF32 off")
    for name, (make, batch, shape) in nets(nn).items():
        torch.manual_seed(1)
        model = make().to(dev)
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        x = torch.randn(batch, *shape, device=dev)
        y = torch.randint(0, 10, (batch,), device=dev)

        def step():
            opt.zero_grad(set_to_none=False)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

        for _ in range(5):
            step()
        sync()
        t0 = time.perf_counter()
        step()
        sync()
        steps = max(1, int(a.seconds / max(time.perf_counter() - t0, 1e-6)))
        rates = []
        for _ in range(a.reps):
            sync()
            t0 = time.perf_counter()
            for _ in range(steps):
                step()
            sync()
            rates.append(batch * steps / (time.perf_counter() - t0))
        row = {"net": name, "batch": batch, "steps": steps, "samples_per_s": statistics.median(rates),
               "min": min(rates), "max": max(rates)}
        rows.append(row)
        print(f"{name:10} {batch:6d} {row['samples_per_s']:12.1f} {row['min']:12.1f} {row['max']:12.1f}")
    json.dump({"torch": torch.__version__, "device": a.device, "tf32": False, "rows": rows}, open(a.json, "w"), indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
