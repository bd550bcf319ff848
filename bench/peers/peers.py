#!/usr/bin/env python3
"""nbsgd against PyTorch on this machine's CPU, interleaved in one run (bench/peers/README.md).

  1. stragglers: PyTorch DDP (gloo, one process per worker) against nbsgd's real clock,
     2 workers, worker 1 slowed 4x; samples/s, time to a training loss, and the ratios
     nbsgd sync / DDP (the engine's overhead) and nbsgd fastest / DDP (the method's gain)
  2. single: one worker's steady training samples/s, PyTorch against nbsgd's host
     backend, same threads and batch, LeNet and ResNet-20
  3. parity: test accuracy of LeNet after 2 epochs of Fashion-MNIST, several seeds

Runs alternate (A B C A B C ...) so that a change in the machine's load hits every side
alike; each figure is the median of the repeats with their min and max. First it checks
that the PyTorch nets have nbsgd's parameter names, shapes and counts and that PyTorch's SGD
steps from nbsgd's initial weights give nbsgd's weights; it stops if not.

Usage: bench/peers/.venv/bin/python bench/peers/peers.py [--nbsgd build/host/nbsgd]
         [--json bench/peers/results.json] [--parts stragglers,single,parity] [--repeats 3]
       bench/peers/.venv/bin/python bench/peers/peers.py --check     (the check alone)
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
PARTS = ("stragglers", "single", "parity")


def fail(msg):
    raise SystemExit(f"peers.py: {msg}")


def run_json(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-600:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


def torch_run(what, **flags):
    cmd = [sys.executable, os.path.join(HERE, "torch_runs.py"), what]
    for k, v in flags.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    return run_json(cmd)


def nbsgd_run(a, *flags, binary=None):
    """One `nbsgd train` on the real clock: summary.json plus the per-step records."""
    with tempfile.TemporaryDirectory() as out:
        cmd = [binary or a.nbsgd, "train", "--clock", "real", "--quiet", "--out", out, *map(str, flags)]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"{' '.join(cmd)} exited {r.returncode}: {r.stderr.strip()[-600:]}")
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
        with open(os.path.join(out, "metrics.jsonl")) as f:
            steps = [json.loads(line) for line in f if line.strip()]
    summary["step_records"] = [{"t": s["t"], "samples": s["samples"], "loss": s["loss"]} for s in steps]
    # Mini-batches each worker had counted in the steps' windows (of steps x m possible).
    summary["counted_minibatches"] = [sum(s["finished"][i] for s in steps) for i in range(len(steps[0]["finished"]))]
    return summary


def steady_rate(summary, warmup):
    """samples/s over the steps after the first `warmup` (their setup costs are not the rate)."""
    rec = summary["step_records"]
    if len(rec) <= warmup:
        fail(f"nbsgd ran {len(rec)} steps, fewer than the {warmup} warm-up steps")
    t0 = rec[warmup - 1]["t"] if warmup > 0 else 0.0
    return sum(r["samples"] for r in rec[warmup:]) / (rec[-1]["t"] - t0)


def stats(values):
    v = [x for x in values if x is not None]
    if not v:
        return {"median": None, "min": None, "max": None, "n": 0, "of": len(values), "values": values}
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v), "of": len(values), "values": values}


# ------------------------------------------------------------------ parts
def part_stragglers(a, threads):
    common = dict(steps=a.steps, batch=a.straggler_batch, target_loss=a.target_loss)
    runs = {"DDP gloo": [], "nbsgd sync": [], "nbsgd fastest": []}
    for r in range(a.repeats):
        seed = r + 1
        runs["DDP gloo"].append(torch_run("ddp", world=2, threads=threads, slow_rank=1, slowdown=a.slowdown,
                                          seed=seed, **common))
        for window in ("sync", "fastest"):
            runs[f"nbsgd {window}"].append(nbsgd_run(
                a, "--net", "lenet", "--host-workers", 2, "--slowdown", f"1,{a.slowdown:g}", "--window", window,
                "--batch", a.straggler_batch, "--split", a.split, "--steps", a.steps, "--target-loss", a.target_loss,
                "--seed", seed))
        progress(f"stragglers repeat {r + 1}/{a.repeats}")
    rows = []
    ddp = runs["DDP gloo"]
    for name, rs in runs.items():
        row = {"run": name, "samples_per_s": stats([x["samples_per_s"] for x in rs]),
               "time_to_target_s": stats([x["time_to_target_s"] for x in rs]),
               "final_train_loss": stats([x["final_train_loss"] for x in rs]),
               # Paired by repeat: the runs of one repeat ran back to back.
               "vs_ddp": stats([x["samples_per_s"] / d["samples_per_s"] for x, d in zip(rs, ddp)])}
        if name != "DDP gloo":
            row["wasted_minibatches"] = stats([x["wasted_minibatches"] for x in rs])
            row["slow_counted_minibatches"] = stats([x["counted_minibatches"][1] for x in rs])
        rows.append(row)
    return {"workers": 2, "slowdown": f"1,{a.slowdown:g}", "slow_factor": a.slowdown, "net": "lenet", "batch_per_worker": a.straggler_batch,
            "split": a.split, "steps": a.steps, "target_loss": a.target_loss, "threads_per_worker": threads,
            "rows": rows, "runs": runs}


SINGLE = {"lenet": {"steps": 60, "data": []},
          "resnet20": {"steps": 8, "data": ["--data", "synthetic-cifar", "--test-limit", 128]}}


def part_single(a, threads):
    out = {"threads": threads, "batch": a.batch, "split": a.split, "warmup_steps": a.warmup, "nets": {},
           "baseline": a.baseline or None}
    mb = a.batch // a.split
    for net, cfg in SINGLE.items():
        steps = max(2, int(cfg["steps"] * a.scale))
        total = steps + a.warmup
        # --baseline: a second nbsgd binary (before a change) in the same interleaved runs.
        binaries = [("nbsgd", a.nbsgd)] + ([("baseline", a.baseline)] if a.baseline else [])
        runs = {f"PyTorch B={a.batch}": []}
        for label, _ in binaries:
            runs[f"{label} B={a.batch} m=1"] = []
            runs[f"{label} B={a.batch} m={a.split}"] = []
        runs[f"PyTorch B={mb}"] = []
        for _ in range(a.repeats):
            for b in (a.batch, mb):
                s = steps * (a.batch // b)  # the same samples at either batch
                runs[f"PyTorch B={b}"].append(torch_run("single", net=net, batch=b, steps=s, warmup=a.warmup,
                                                        threads=threads)["samples_per_s"])
            for label, binary in binaries:
                for m in (1, a.split):
                    summ = nbsgd_run(a, "--net", net, *cfg["data"], "--host-workers", 1, "--window", "sync",
                                     "--batch", a.batch, "--split", m, "--steps", total,
                                     "--train-limit", a.batch * (total + 1), binary=binary)
                    runs[f"{label} B={a.batch} m={m}"].append(steady_rate(summ, a.warmup))
        rows = []
        for name, v in runs.items():
            ref = runs[f"PyTorch B={mb}"] if name.endswith(f"m={a.split}") else runs[f"PyTorch B={a.batch}"]
            vs = f"PyTorch B={mb}" if name.endswith(f"m={a.split}") else f"PyTorch B={a.batch}"
            rows.append({"run": name, "samples_per_s": stats(v), "vs": vs,
                         "vs_pytorch": stats([x / y for x, y in zip(v, ref)])})
        out["nets"][net] = {"steps": steps, "rows": rows}
        progress(f"single {net}")
    return out


def part_parity(a, threads):
    acc = {"PyTorch": [], "nbsgd sync": []}
    for seed in range(1, a.seeds + 1):
        acc["PyTorch"].append(torch_run("converge", epochs=a.epochs, batch=a.batch, seed=seed, threads=threads,
                                        train_limit=a.train_limit)["test_accuracy"])
        acc["nbsgd sync"].append(nbsgd_run(a, "--net", "lenet", "--host-workers", 1, "--window", "sync",
                                           "--batch", a.batch, "--split", a.split, "--epochs", a.epochs,
                                           "--seed", seed, "--train-limit", a.train_limit)["test_accuracy"])
        progress(f"parity seed {seed}/{a.seeds}")
    return {"net": "lenet", "epochs": a.epochs, "batch": a.batch, "split": a.split, "threads": threads,
            "train_limit": a.train_limit, "seeds": list(range(1, a.seeds + 1)),
            "rows": [{"run": k, "test_accuracy": stats(v)} for k, v in acc.items()]}


# ------------------------------------------------------------------ output
def progress(msg):
    print(f"  [{datetime.datetime.now():%H:%M:%S}] {msg}, load average {load()}", file=sys.stderr, flush=True)


def load():
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def fmt(s, spec="{:,.0f}", unit=""):
    if s is None or s["median"] is None:
        return "not reached" if s else "-"
    text = f"{spec.format(s['median'])}{unit} [{spec.format(s['min'])}-{spec.format(s['max'])}]"
    return text + (f" ({s['n']} of {s['of']})" if s["n"] < s["of"] else "")


def table(res):
    head = ("part", "run", "threads", "samples/s", "time to loss (s)", "ratio", "test accuracy", "notes")
    lines = []
    if "stragglers" in res:
        p = res["stragglers"]
        for r in p["rows"]:
            ratio = "1 (reference)" if r["run"] == "DDP gloo" else fmt(r["vs_ddp"], "{:.2f}", "x") + " of DDP"
            note = (f"slow worker counted {fmt(r['slow_counted_minibatches'])} of {p['steps'] * p['split']} "
                    f"mini-batches, wasted {fmt(r['wasted_minibatches'])}" if "wasted_minibatches" in r else
                    f"rank 1 sleeps {p['slow_factor'] - 1:g}x its forward+backward")
            lines.append((f"stragglers {p['slowdown']}", r["run"], f"{p['threads_per_worker']}/worker",
                          fmt(r["samples_per_s"]), fmt(r["time_to_target_s"], "{:.2f}"), ratio, "", note))
    if "single" in res:
        p = res["single"]
        for net, n in p["nets"].items():
            for r in n["rows"]:
                ratio = "" if r["run"].startswith("PyTorch") else fmt(r["vs_pytorch"], "{:.2f}", "x") + f" of {r['vs']}"
                note = f"mini-batch {p['batch'] // p['split']}" if r["run"].endswith(f"m={p['split']}") else ""
                lines.append((f"single {net}", r["run"], str(p["threads"]), fmt(r["samples_per_s"]), "", ratio, "", note))
    if "parity" in res:
        p = res["parity"]
        for r in p["rows"]:
            subset = f"first {p['train_limit']} training samples" if p["train_limit"] else "all 60,000 training samples"
            lines.append((f"parity {p['epochs']} epochs", r["run"], str(p["threads"]), "", "", "",
                          fmt(r["test_accuracy"], "{:.4f}"), f"seeds {p['seeds'][0]}-{p['seeds'][-1]}, {subset}"))
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(head)]
    row = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"  # noqa: E731
    return "\n".join([row(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [row(x) for x in lines])


def machine():
    cpu = "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"host": platform.node(), "cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(mem, 1),
            "os": platform.platform()}


def git_commit():
    r = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else "unknown"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--nbsgd", default=os.path.join(ROOT, "build/host/nbsgd"), help="the nbsgd binary (host build)")
    ap.add_argument("--baseline", default="", help="single: a second nbsgd binary (say, before a change) run "
                    "interleaved with the others, its rows labelled 'baseline'")
    ap.add_argument("--json", default=os.path.join(HERE, "results.json"), help="where to write the results")
    ap.add_argument("--check", action="store_true", help="only check the nets against nbsgd's, then exit")
    ap.add_argument("--parts", default=",".join(PARTS), help="comma-separated subset of " + ",".join(PARTS))
    ap.add_argument("--repeats", type=int, default=3, help="interleaved repeats of parts 1 and 2")
    ap.add_argument("--steps", type=int, default=300, help="stragglers: steps per run")
    ap.add_argument("--slowdown", type=float, default=4.0, help="stragglers: worker 1's slowdown")
    ap.add_argument("--straggler-batch", type=int, default=64, help="stragglers: batch B per worker")
    ap.add_argument("--target-loss", type=float, default=0.6, help="stragglers: training loss to time (mean of the last 10 steps)")
    ap.add_argument("--batch", type=int, default=128, help="single and parity: batch B")
    ap.add_argument("--split", type=int, default=8, help="nbsgd's mini-batches m per batch")
    ap.add_argument("--warmup", type=int, default=3, help="single: untimed steps first")
    ap.add_argument("--scale", type=float, default=1.0, help="single: scale the timed steps (0.25 for a quick try)")
    ap.add_argument("--epochs", type=int, default=2, help="parity: epochs")
    ap.add_argument("--seeds", type=int, default=3, help="parity: seeds 1..N")
    ap.add_argument("--train-limit", type=int, default=0, help="parity: first N training samples only (0: all)")
    a = ap.parse_args()
    parts = [p for p in a.parts.split(",") if p]
    for p in parts:
        if p not in PARTS:
            fail(f"--parts: unknown part {p!r} (expected {', '.join(PARTS)})")
    for flag in ("repeats", "steps", "straggler_batch", "batch", "split", "epochs", "seeds"):
        if getattr(a, flag) < 1:
            fail(f"--{flag.replace('_', '-')} {getattr(a, flag)}: expected a count >= 1")
    if a.batch % a.split or a.straggler_batch % a.split:
        fail(f"--split {a.split} must divide --batch {a.batch} and --straggler-batch {a.straggler_batch}")
    if a.slowdown < 1 or a.warmup < 1 or a.train_limit < 0 or a.scale <= 0:
        fail("--slowdown must be >= 1, --warmup >= 1, --train-limit >= 0, --scale > 0")
    if a.baseline and not os.access(a.baseline, os.X_OK):
        fail(f"--baseline {a.baseline}: not an executable")
    if not os.access(a.nbsgd, os.X_OK):
        fail(f"--nbsgd {a.nbsgd}: not an executable (build it: cmake --preset host && cmake --build --preset host)")
    try:
        import models
        import torch
    except ImportError as e:
        fail(f"{e}: run bench/peers/setup.sh and use bench/peers/.venv/bin/python")

    errors = models.check_against_nbsgd(a.nbsgd)
    for e in errors:
        print(f"peers.py --check: {e}", file=sys.stderr)
    if errors:
        fail(f"{len(errors)} differences between the PyTorch nets and nbsgd's; no measurement taken")
    print("peers.py: lenet and resnet20 have nbsgd's parameter names, shapes and counts; 3 SGD steps of LeNet from "
          "nbsgd's initial weights give nbsgd's weights", file=sys.stderr)
    if a.check:
        return

    cores = os.cpu_count()
    res = {"date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"), "machine": machine(),
           "nbsgd_commit": git_commit(), "torch": torch.__version__, "backend": "host", "clock": "real",
           "load_average_start": load()}
    print(f"peers.py: {res['machine']['cpu']}, {cores} cores, load average {res['load_average_start']}", file=sys.stderr)
    # nbsgd gives each of N host workers hardware_concurrency / N OpenMP threads
    # (runtime/train/setup.cpp); PyTorch gets the same per process.
    if "stragglers" in parts:
        res["stragglers"] = part_stragglers(a, max(1, cores // 2))
    if "single" in parts:
        res["single"] = part_single(a, cores)
    if "parity" in parts:
        res["parity"] = part_parity(a, cores)
    res["load_average_end"] = load()
    res["table"] = table(res)
    print(f"nbsgd {res['nbsgd_commit']} (host backend, real clock) against PyTorch {res['torch']} (CPU), "
          f"{res['machine']['cpu']} x {cores} cores, {res['machine']['host']}, {res['date']}")
    print(f"load average (1, 5, 15 min): {res['load_average_start']} at the start, {res['load_average_end']} at the end")
    print(res["table"])
    with open(a.json, "w") as f:
        json.dump(res, f, indent=1)
    print(f"wrote {a.json}")


if __name__ == "__main__":
    main()
