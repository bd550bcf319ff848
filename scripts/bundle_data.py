#!/usr/bin/env python3
"""Writes a reduced Fashion-MNIST in IDX format for the release bundle: the first
N training and M test samples of the full set (gzipped IDX, as Debian's
dataset-fashion-mnist installs it), as plain IDX files nbsgd reads with
--data-dir. Standard library only, so any python3 will do.

Usage: bundle_data.py SRC_DIR DST_DIR [--train 10000] [--test 2000]
"""
import argparse
import gzip
import os
import struct
import sys

FILES = {  # split -> (images, labels)
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "t10k": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def open_idx(src, base):
    plain = os.path.join(src, base)
    if os.path.isfile(plain):
        return open(plain, "rb")
    gz = plain + ".gz"
    if os.path.isfile(gz):
        return gzip.open(gz, "rb")
    sys.exit(f"bundle_data: {gz} not found (nor {plain})")


def reduce_file(src, dst, base, magic, keep):
    with open_idx(src, base) as f:
        head = f.read(4)
        (got,) = struct.unpack(">I", head)
        if got != magic:
            sys.exit(f"bundle_data: {base}: IDX magic {got:#x}, expected {magic:#x}")
        dims = 3 if magic == 0x803 else 1
        shape = list(struct.unpack(">" + "I" * dims, f.read(4 * dims)))
        if shape[0] < keep:
            sys.exit(f"bundle_data: {base} has {shape[0]} samples, fewer than the {keep} asked for")
        per = 1
        for d in shape[1:]:
            per *= d
        payload = f.read(keep * per)
        if len(payload) != keep * per:
            sys.exit(f"bundle_data: {base} is truncated")
    shape[0] = keep
    tmp = os.path.join(dst, base + ".tmp")
    with open(tmp, "wb") as out:
        out.write(struct.pack(">I", magic))
        out.write(struct.pack(">" + "I" * dims, *shape))
        out.write(payload)
    os.replace(tmp, os.path.join(dst, base))
    return shape


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--train", type=int, default=10000)
    ap.add_argument("--test", type=int, default=2000)
    a = ap.parse_args()
    os.makedirs(a.dst, exist_ok=True)
    for split, keep in (("train", a.train), ("t10k", a.test)):
        images, labels = FILES[split]
        shape = reduce_file(a.src, a.dst, images, 0x803, keep)
        reduce_file(a.src, a.dst, labels, 0x801, keep)
        print(f"bundle_data: {split}: {keep} images of {shape[1]}x{shape[2]} -> {a.dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
