"""Training and inference speed of the networks (images per second), CPU and GPU when present.

    python benchmarks/bench_models.py            # all networks, ~2 s per measurement
    python benchmarks/bench_models.py --quick    # fewer repeats
    python benchmarks/bench_models.py --json

Training = forward + backward + optimizer step on random images of the paper's size (PMD CNN:
minibatch 30 of 128 x 256; ResNet-34: 32 of 128 x 128); inference = eval-mode forward under
no_grad at batch 64, and the latency of one image (batch 1), to compare with seed 003's 5 ms.
On a GPU it also reports one training epoch of the paper's sets (PMD: 2,250 images; scattering:
20,046 = 4/5 of 25,058) from the measured rate.  Numbers are machine- and load-dependent:
the script prints the host, the threads and the 1-minute load average with them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from records import record  # noqa: E402  benchmarks/records.py: writes benchmarks/records/models[_threads<N>].json

from models.networks import build, count_parameters  # noqa: E402

NETS = {
    "pmd-cnn": (dict(name="pmd-cnn", input_shape=(128, 256)), 30, 2250),
    "1d-cnn": (dict(name="cnn1d", input_shape=(256,)), 30, 2250),
    "1d-mlp": (dict(name="mlp1d", input_shape=(256,)), 30, 2250),
    "resnet34-tanh": (dict(name="resnet-tanh", input_shape=(128, 128)), 32, 20046),
    "resnet-small": (dict(name="resnet-tanh", input_shape=(128, 128), stacks=[2, 2, 2, 2], widths=[16, 32, 64, 128],
                          stem=16), 32, 20046),
}


def _rate(fn, images_per_call: int, seconds: float, device) -> float:
    fn()
    fn()  # warm-up
    _sync(device)
    n, t0 = 0, time.perf_counter()
    while True:
        fn()
        n += 1
        _sync(device)
        dt = time.perf_counter() - t0
        if dt >= seconds and n >= 3:
            return n * images_per_call / dt


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def bench(name: str, device: torch.device, seconds: float) -> dict:
    spec, batch, epoch_images = NETS[name]
    spec = dict(spec)
    model = build(spec.pop("name"), **spec).to(device)
    shape = spec["input_shape"]
    x = torch.randn(batch, *shape, device=device)
    y = torch.randn(batch, model.head.out_features, device=device)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def step():
        model.train()
        loss = torch.nn.functional.mse_loss(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    train_ips = _rate(step, batch, seconds, device)
    model.eval()
    xb = torch.randn(64, *shape, device=device)
    x1 = torch.randn(1, *shape, device=device)
    with torch.no_grad():
        infer_ips = _rate(lambda: model(xb), 64, seconds, device)
        one = _rate(lambda: model(x1), 1, seconds, device)
    return {"network": name, "device": device.type, "parameters": count_parameters(model), "input": list(shape),
            "train_batch": batch, "train_images_per_s": train_ips, "infer_images_per_s_batch64": infer_ips,
            "latency_ms_batch1": 1000.0 / one, "epoch_s_paper_set": epoch_images / train_ips,
            "paper_epoch_images": epoch_images}


def write_record(args, rows: list[dict], host: dict) -> None:
    """benchmarks/records/models.json (``--threads N``: models_threads<N>.json): the rates printed below."""
    figures, table = {}, []
    for r in rows:
        p = f"{r['network']}_{r['device']}"
        figures.update({f"{p}_train": (r["train_images_per_s"], "images/s"),
                        f"{p}_infer_b64": (r["infer_images_per_s_batch64"], "images/s"),
                        f"{p}_latency_b1": (r["latency_ms_batch1"], "ms"), f"{p}_epoch": (r["epoch_s_paper_set"], "s")})
        table.append([r["network"], r["device"], f"{r['parameters']:,}", round(r["train_images_per_s"], 1),
                      round(r["infer_images_per_s_batch64"], 1), round(r["latency_ms_batch1"], 2),
                      f"{r['epoch_s_paper_set']:.0f} s ({r['paper_epoch_images']:,})"])
    name, title = "models", "Networks: training and inference speed"
    if args.threads:
        name, title = f"models_threads{args.threads}", f"{title}, {args.threads} torch thread" + "s" * (args.threads > 1)
    record(name, title=title, figures=figures,
           table={"title": f"torch threads {host['torch_threads']}" + (", --quick" if args.quick else ""),
                  "columns": ["network", "device", "params", "train img/s", "infer img/s (b64)", "latency b1 (ms)",
                              "epoch of the paper's set"], "rows": table})


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="about 0.5 s per measurement")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--nets", default=",".join(NETS), help="comma-separated subset of " + ",".join(NETS))
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    seconds = 0.5 if args.quick else 2.0
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])
    rows = [bench(n, d, seconds) for d in devices for n in args.nets.split(",")]
    host = {"host": platform.node(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
            "load_avg_1min": os.getloadavg()[0], "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "date": time.strftime("%Y-%m-%d")}
    write_record(args, rows, host)
    if args.json:
        print(json.dumps({"host": host, "results": rows}, indent=1))
        return
    print(f"# {host}")
    print("| network | device | params | train img/s | infer img/s (b64) | latency b1 (ms) | epoch of paper set (s) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['network']} | {r['device']} | {r['parameters']:,} | {r['train_images_per_s']:.1f} | "
              f"{r['infer_images_per_s_batch64']:.1f} | {r['latency_ms_batch1']:.2f} | "
              f"{r['epoch_s_paper_set']:.0f} ({r['paper_epoch_images']}) |")
    print("seed 003: 5 ms per image (GTX 1060); seed 000: about 5 min for 6000 PMDs, 35-40 s for 750 (GPU).")


if __name__ == "__main__":
    main()
