"""The PyTorch side of the peer benchmark: one run per call, its result as JSON on stdout.
peers.py runs each call in its own process (as it runs each nbsgd run), so thread
settings, memory and torch's import never leak from one run into the next.

  torch_runs.py ddp      --steps S --batch B [--slow-rank R --slowdown F] ...
  torch_runs.py single   --net N --batch B --steps S --threads T
  torch_runs.py converge --epochs E --batch B --seed S --threads T [--train-limit L]
"""
import argparse
import json
import os
import socket
import sys
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.nn.parallel import DistributedDataParallel as DDP

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import models  # noqa: E402

LOSS_WINDOW = 10  # nbsgd's LossTracker: the target is met by the mean of the last 10 steps


def time_to_target(steps, target):
    """steps: [(t, loss_sum, count)] in order. The first t at which the sample-weighted
    mean loss of the last LOSS_WINDOW steps is <= target (nbsgd's rule), else None."""
    if target <= 0:
        return None
    for i, (t, _, _) in enumerate(steps):
        recent = steps[max(0, i + 1 - LOSS_WINDOW):i + 1]
        n = sum(c for _, _, c in recent)
        if n > 0 and sum(s for _, s, _ in recent) / n <= target:
            return t
    return None


def _ddp_rank(rank, a, port, out_path):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(a.threads)
    dist.init_process_group("gloo", rank=rank, world_size=a.world)
    x, y = models.load_fashion_mnist("train", a.train_limit)
    model = DDP(models.make_net("lenet", a.seed), bucket_cap_mb=64)
    opt = models.make_sgd(model)
    slow = rank == a.slow_rank and a.slowdown > 1
    clock = {"t0": 0.0, "hooks": 0}

    # The straggler: when its gradients are ready (the comm hook is called at the end of
    # its backward), it sleeps (slowdown - 1) x its forward + backward time before
    # sending them, so every step of the group waits as for a device `slowdown` times
    # slower. nbsgd's throttle does the same per mini-batch (kernels/throttle.h).
    def hook(state, bucket):
        clock["hooks"] += 1
        if slow:
            time.sleep((a.slowdown - 1) * (time.perf_counter() - clock["t0"]))
        return default_hooks.allreduce_hook(None, bucket)

    model.register_comm_hook(None, hook)
    # Each rank its own shard of one shuffled order per epoch (DistributedSampler's split).
    g = torch.Generator().manual_seed(a.seed)
    order, pos, records = torch.randperm(len(x), generator=g)[rank::a.world], 0, []
    dist.barrier()
    start = time.perf_counter()
    for _ in range(a.steps):
        if pos + a.batch > len(order):
            order, pos = torch.randperm(len(x), generator=g)[rank::a.world], 0
        idx = order[pos:pos + a.batch]
        pos += a.batch
        clock["t0"] = time.perf_counter()
        opt.zero_grad(set_to_none=False)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
        records.append((time.perf_counter() - start, loss.item() * len(idx), len(idx)))
    gathered = [None] * a.world
    dist.all_gather_object(gathered, records)
    if rank == 0:
        # Step k of the group ends when its last rank's update does.
        steps = [(max(r[k][0] for r in gathered), sum(r[k][1] for r in gathered), sum(r[k][2] for r in gathered))
                 for k in range(a.steps)]
        clock_s = steps[-1][0]
        samples = sum(c for _, _, c in steps)
        res = {"samples": samples, "steps": a.steps, "clock_s": clock_s, "samples_per_s": samples / clock_s,
               "time_to_target_s": time_to_target(steps, a.target_loss),
               "final_train_loss": sum(s for _, s, _ in steps[-LOSS_WINDOW:]) / sum(c for *_, c in steps[-LOSS_WINDOW:]),
               "comm_hooks_per_step": clock["hooks"] / a.steps,
               "step_records": [{"t": t, "samples": c, "loss": l / c} for t, l, c in steps], "threads_per_rank": torch.get_num_threads()}
        with open(out_path, "w") as f:
            json.dump(res, f)
    dist.destroy_process_group()


def run_ddp(a):
    with socket.socket() as s:  # a free loopback port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = f"/tmp/peers_ddp_{os.getpid()}.json"
    mp.spawn(_ddp_rank, args=(a, port, out), nprocs=a.world, join=True)
    with open(out) as f:
        res = json.load(f)
    os.remove(out)
    if res["comm_hooks_per_step"] != 1:
        raise SystemExit(f"torch_runs.py ddp: {res['comm_hooks_per_step']} gradient buckets per step; the "
                         "straggler's sleep assumes one (raise bucket_cap_mb)")
    return res


def run_single(a):
    """Steady training samples/s of one process: forward, cross-entropy, backward, SGD
    step on fixed random inputs of the net's shape; `warmup` steps are not timed."""
    torch.set_num_threads(a.threads)
    model = models.make_net(a.net, a.seed)
    opt = models.make_sgd(model)
    g = torch.Generator().manual_seed(a.seed)
    x = torch.randn(a.batch, *models.SHAPES[a.net], generator=g)
    y = torch.randint(0, 10, (a.batch,), generator=g)

    def step():
        opt.zero_grad(set_to_none=False)
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    for _ in range(a.warmup):
        step()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    dt = time.perf_counter() - t0
    return {"samples_per_s": a.batch * a.steps / dt, "clock_s": dt, "steps": a.steps, "threads": torch.get_num_threads()}


def run_converge(a):
    """LeNet on Fashion-MNIST, one process: `epochs` shuffled epochs, then the test accuracy."""
    torch.set_num_threads(a.threads)
    x, y = models.load_fashion_mnist("train", a.train_limit)
    xt, yt = models.load_fashion_mnist("t10k")
    model = models.make_net("lenet", a.seed)
    opt = models.make_sgd(model)
    g = torch.Generator().manual_seed(a.seed)
    t0 = time.perf_counter()
    for _ in range(a.epochs):
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(order), a.batch):
            idx = order[i:i + a.batch]
            opt.zero_grad(set_to_none=False)
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    train_s = time.perf_counter() - t0
    model.eval()
    with torch.no_grad():
        correct = sum((model(xt[i:i + 1000]).argmax(1) == yt[i:i + 1000]).sum().item() for i in range(0, len(xt), 1000))
    return {"test_accuracy": correct / len(xt), "train_samples": len(x) * a.epochs, "train_s": train_s}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=["ddp", "single", "converge"])
    ap.add_argument("--net", default="lenet", choices=sorted(models.NETS))
    ap.add_argument("--batch", type=int, default=models.HYPER["batch"])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--world", type=int, default=2)
    ap.add_argument("--slow-rank", type=int, default=1)
    ap.add_argument("--slowdown", type=float, default=1.0)
    ap.add_argument("--target-loss", type=float, default=0.0)
    ap.add_argument("--train-limit", type=int, default=0)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    for flag, v in (("--batch", a.batch), ("--steps", a.steps), ("--epochs", a.epochs), ("--threads", a.threads),
                    ("--world", a.world)):
        if v < 1:
            raise SystemExit(f"torch_runs.py: {flag} {v}: expected a count >= 1")
    if a.slowdown < 1:
        raise SystemExit(f"torch_runs.py: --slowdown {a.slowdown}: expected a factor >= 1")
    res = {"ddp": run_ddp, "single": run_single, "converge": run_converge}[a.what](a)
    res["torch"] = torch.__version__
    print(json.dumps(res))


if __name__ == "__main__":
    main()
