"""nbsgd's nets, data and optimiser in PyTorch, for the peer benchmark (peers.py).

Everything here mirrors a file of nbsgd, so that the two sides train the same thing:
  LeNet, ResNet20     nets/zoo/lenet.toml, nets/zoo/resnet20.toml: the same layers under
                      the same state_dict names and shapes (nbsgd's checkpoints use them)
  init_like_nbsgd     nets/model.h: Kaiming normal std sqrt(2/fan_in) for conv and linear
                      weights, zero biases, BN weight 1 / bias 0 (the values differ, the
                      generator is nbsgd's own; the distribution is the same)
  load_fashion_mnist  nets/data/fashion_mnist.*: the gzipped IDX files, x/255, then
                      (x - 0.2860) / 0.3530
  HYPER, make_sgd     runtime/train/config.h defaults and nets/optim/ops.h: torch.optim.SGD
                      on the mean gradient, dampening 0, weight decay added to the gradient
  check_against_nbsgd parameter names, shapes and counts equal to the nbsgd binary's, and
                      3 SGD steps from nbsgd's initial weights give nbsgd's weights

BatchNorm: nbsgd uses momentum 0.1, eps 1e-5 and the unbiased running variance, which are
PyTorch's defaults. PyTorch's extra `num_batches_tracked` buffer holds no weights; it is
left out of the comparison (nbsgd has no such tensor).
"""
import gzip
import json
import math
import os
import struct
import subprocess
import sys
import tempfile

import torch
from torch import nn

FASHION_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MEAN, FASHION_STD = 0.2860, 0.3530
# runtime/train/config.h: lr, momentum, weight decay; batch B per worker and split m.
HYPER = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch": 128, "split": 8}
SHAPES = {"lenet": (1, 28, 28), "resnet20": (3, 32, 32)}


class LeNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.fc1 = nn.Linear(400, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        f = nn.functional
        x = f.max_pool2d(f.relu(self.conv1(x)), 2)
        x = f.max_pool2d(f.relu(self.conv2(x)), 2)
        x = torch.flatten(x, 1)
        return self.fc3(f.relu(self.fc2(f.relu(self.fc1(x)))))


class BasicBlock(nn.Module):
    """bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x), then a relu (the toml's residual + relu).
    The shortcut is a 1x1 strided conv + BN where the shape changes (option B)."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        y = nn.functional.relu(self.bn1(self.conv1(x)))
        return nn.functional.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class ResNet20(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        cin = 16
        for stage, (cout, stride) in enumerate(((16, 1), (32, 2), (64, 2)), start=1):
            blocks = []
            for i in range(3):
                blocks.append(BasicBlock(cin, cout, stride if i == 0 else 1))
                cin = cout
            setattr(self, f"layer{stage}", nn.Sequential(*blocks))
        self.fc = nn.Linear(64, 10)

    def forward(self, x):
        x = nn.functional.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


NETS = {"lenet": LeNet, "resnet20": ResNet20}


def init_like_nbsgd(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                fan_in = m.weight[0].numel()
                m.weight.normal_(0.0, math.sqrt(2.0 / fan_in), generator=g)
                if m.bias is not None:
                    m.bias.zero_()
            elif isinstance(m, nn.BatchNorm2d):
                m.reset_parameters()  # weight 1, bias 0, running mean 0, var 1
    return model


def make_net(name, seed=1):
    if name not in NETS:
        raise SystemExit(f"models.py: unknown net {name!r} (expected one of {', '.join(NETS)})")
    torch.manual_seed(seed)
    return init_like_nbsgd(NETS[name](), seed)


def make_sgd(model, lr=HYPER["lr"]):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=HYPER["momentum"],
                           weight_decay=HYPER["weight_decay"])


def _read_idx(path, magic, dims):
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise SystemExit(f"models.py: cannot read {path}: {e}")
    if len(raw) < 4 + 4 * dims or struct.unpack(">I", raw[:4])[0] != magic:
        raise SystemExit(f"models.py: {path}: not an IDX file with magic {magic:#x}")
    shape = struct.unpack(">" + "I" * dims, raw[4:4 + 4 * dims])
    body = raw[4 + 4 * dims:]
    if len(body) != math.prod(shape):
        raise SystemExit(f"models.py: {path}: {len(body)} bytes of data, expected {math.prod(shape)}")
    return torch.frombuffer(bytearray(body), dtype=torch.uint8).reshape(shape)


def load_fashion_mnist(split, limit=0, data_dir=FASHION_DIR):
    """split 'train' or 't10k'; limit > 0 keeps the first `limit` samples (nbsgd's
    --train-limit keeps the first N too). Returns (images [n,1,28,28] float32, labels int64)."""
    x = _read_idx(os.path.join(data_dir, f"{split}-images-idx3-ubyte.gz"), 0x803, 3)
    y = _read_idx(os.path.join(data_dir, f"{split}-labels-idx1-ubyte.gz"), 0x801, 1)
    if x.shape[0] != y.shape[0]:
        raise SystemExit(f"models.py: {data_dir}/{split}: {x.shape[0]} images but {y.shape[0]} labels")
    if limit > 0:
        x, y = x[:limit], y[:limit]
    # Same float per byte as nbsgd's lookup table: (v / 255 - mean) / std in fp32.
    lut = (torch.arange(256, dtype=torch.float32) / 255.0 - FASHION_MEAN) / FASHION_STD
    return lut[x.long()].unsqueeze(1), y.long()


def torch_tensors(model):
    """name -> shape of the weights nbsgd also has: parameters and BN running statistics."""
    return {k: list(v.shape) for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}


def _layer_params(model):
    """Parameter count per nbsgd layer name (the module path that owns the tensors)."""
    out = {}
    for k, v in model.named_parameters():
        layer = k.rsplit(".", 1)[0]
        out[layer] = out.get(layer, 0) + v.numel()
    return out


def _nbsgd_train(nbsgd, out, *flags):
    cmd = [nbsgd, "train", "--host-workers", "1", "--clock", "real", "--test-limit", "8", "--quiet", "--out", out,
           *map(str, flags)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"models.py: {' '.join(cmd)} failed ({r.returncode}): {r.stderr.strip()[-400:]}")
    return out


def read_safetensors(path):
    """name -> tensor of a safetensors file (nets/checkpoint.h: F32 only)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        body = f.read()
    return {k: torch.frombuffer(bytearray(body[v["data_offsets"][0]:v["data_offsets"][1]]),
                                dtype=torch.float32).reshape(v["shape"])
            for k, v in header.items() if k != "__metadata__"}


def _nbsgd_checkpoint_tensors(nbsgd, net, workdir):
    """Trains one tiny step and reads the checkpoint: the names and shapes nbsgd itself
    gives its weights (without the optimiser's momentum.* copies)."""
    data = ["--data", "synthetic-cifar"] if net == "resnet20" else []
    out = _nbsgd_train(nbsgd, os.path.join(workdir, net), "--net", net, *data, "--steps", 1, "--batch", 8,
                       "--split", 1, "--train-limit", 64)
    t = read_safetensors(os.path.join(out, "checkpoint.safetensors"))
    return {k: list(v.shape) for k, v in t.items() if not k.startswith("momentum.")}


def check_same_steps(nbsgd, workdir, steps=3, atol=1e-5):
    """The same data, normalisation, loss and SGD as nbsgd, to rounding: nbsgd's initial
    weights (a run with lr 1e-30) are loaded into the PyTorch LeNet, which then takes
    `steps` SGD steps with HYPER on the first unshuffled batches; nbsgd takes the same
    steps with its defaults (B=128 in m=8 mini-batches). The weights must agree to atol."""
    n = steps * HYPER["batch"]
    common = ["--net", "lenet", "--shuffle", "off", "--train-limit", n]
    init = read_safetensors(os.path.join(_nbsgd_train(nbsgd, os.path.join(workdir, "init"), *common, "--steps", 1,
                                                      "--lr", 1e-30), "checkpoint.safetensors"))
    after = read_safetensors(os.path.join(_nbsgd_train(nbsgd, os.path.join(workdir, "steps"), *common,
                                                       "--steps", steps), "checkpoint.safetensors"))
    with open(os.path.join(workdir, "steps", "config.json")) as f:
        cfg = json.load(f)
    errors = [f"nbsgd's default {k} is {cfg[k]}, models.HYPER says {v}" for k, v in HYPER.items() if cfg[k] != v]
    model = LeNet()
    model.load_state_dict({k: v for k, v in init.items() if not k.startswith("momentum.")})
    opt = make_sgd(model)
    x, y = load_fashion_mnist("train", n)
    for s in range(steps):
        b = slice(s * HYPER["batch"], (s + 1) * HYPER["batch"])
        opt.zero_grad()
        nn.functional.cross_entropy(model(x[b]), y[b]).backward()
        opt.step()
    worst = 0.0
    for k, v in model.state_dict().items():
        d = (v - after[k]).abs().max().item()
        worst = max(worst, d)
        if not d <= atol:
            errors.append(f"lenet: {k} differs from nbsgd's by up to {d:.3g} after {steps} SGD steps (tolerance {atol:g})")
    print(f"models.py: after {steps} SGD steps PyTorch's LeNet weights differ from nbsgd's by at most {worst:.3g}",
          file=sys.stderr)
    return errors


def compare(net, model, described, checkpoint):
    """Every difference between the PyTorch model and nbsgd's description (describe-net
    --json) and checkpoint tensors, as one line each; empty when they agree."""
    errors = []
    ours = torch_tensors(model)
    for k in sorted(set(ours) | set(checkpoint)):
        if k not in checkpoint:
            errors.append(f"{net}: {k} {ours[k]} is in PyTorch, not in nbsgd's checkpoint")
        elif k not in ours:
            errors.append(f"{net}: {k} {checkpoint[k]} is in nbsgd's checkpoint, not in PyTorch")
        elif ours[k] != checkpoint[k]:
            errors.append(f"{net}: {k}: PyTorch shape {ours[k]}, nbsgd {checkpoint[k]}")
    n_params = sum(p.numel() for p in model.parameters())
    if n_params != described["params"]:
        errors.append(f"{net}: {n_params} parameters in PyTorch, describe-net says {described['params']}")
    n_buffers = sum(math.prod(s) for k, s in ours.items() if k.endswith(("running_mean", "running_var")))
    if n_buffers != described["bn_buffers"]:
        errors.append(f"{net}: {n_buffers} BN buffer floats in PyTorch, describe-net says {described['bn_buffers']}")
    per_layer = _layer_params(model)
    # describe-net's rows carry full names ("layer1.0.conv1"); rows without
    # parameters (relu, pool, add) are left out.
    named = {row["name"]: row["params"] for row in described["layers"] if row["params"] > 0}
    for layer in sorted(set(per_layer) | set(named)):
        if per_layer.get(layer) != named.get(layer):
            errors.append(f"{net}: layer {layer}: {per_layer.get(layer)} parameters in PyTorch, "
                          f"describe-net says {named.get(layer)}")
    return errors


def check_against_nbsgd(nbsgd, nets=("lenet", "resnet20")):
    errors = []
    with tempfile.TemporaryDirectory() as tmp:
        for net in nets:
            r = subprocess.run([nbsgd, "describe-net", net, "--json"], capture_output=True, text=True)
            if r.returncode != 0:
                raise SystemExit(f"models.py: {nbsgd} describe-net {net} --json failed: {r.stderr.strip()}")
            errors += compare(net, make_net(net), json.loads(r.stdout), _nbsgd_checkpoint_tensors(nbsgd, net, tmp))
        if not errors:
            errors += check_same_steps(nbsgd, tmp)
    return errors
