"""How VGG-16's §3.1 start from net A depends on how long A trained (docs/zoo.md, the VGG-16 row): for each VGG-11
checkpoint, configuration D built as the zoo_vgg16 recipe builds it (half width, Glorot initialisation, the same
seed for every A), its first four convs and three FC layers copied from A (`init_from_checkpoint`, classifier
kept, as `init_new_head=false`), then D and A scored as they stand on the first `--images` test images.

    python docs/zoo/vgg16_start.py OUT.json CKPT_A [CKPT_A …] [--images 2000] [--command "…"]

One thread, the test view and normalisation recorded in A's checkpoint, bf16 autocast as the zoo runs evaluate.
Records per A: its test loss and top-1, D's at the start, the standard deviation of D's logits, and the Frobenius
norms of the three FC layers D receives."""
from __future__ import annotations

import argparse
import json
import platform
import re
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cnnbench.analysis.zoo import trim  # noqa: E402
from cnnbench.checkpoint import module_from_checkpoint  # noqa: E402
from cnnbench.data.sources import load_fashion_mnist  # noqa: E402
from cnnbench.data.transforms import eval_transform  # noqa: E402
from cnnbench.models import create_model  # noqa: E402
from cnnbench.training.recipe_callbacks import init_from_checkpoint  # noqa: E402


def score(module, images: np.ndarray, labels: np.ndarray, transform, size: int) -> dict[str, float]:
    losses, correct, logits = [], 0, []
    for i in range(0, len(images), 250):
        x = np.stack([transform(image=im)["image"].reshape(size, size, -1) for im in images[i:i + 250]])
        x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
        with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
            out = module(x).float()
        y = torch.from_numpy(labels[i:i + 250]).long()
        losses.append(torch.nn.functional.cross_entropy(out, y, reduction="sum").item())
        correct += int((out.argmax(1) == y).sum())
        logits.append(out)
    return {"loss": sum(losses) / len(images), "top1": correct / len(images),
            "logit_std": float(torch.cat(logits).std())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("ckpts", nargs="+")
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--command", default=None, help="the exact command line, recorded in OUT")
    args = parser.parse_args()
    torch.set_num_threads(1)
    source = load_fashion_mnist(None)
    images, labels = source.test.images[:args.images], source.test.labels[:args.images]
    rows = []
    for ckpt in args.ckpts:
        module, record = module_from_checkpoint(ckpt)
        size = int(record["image_size"])
        transform = eval_transform(size, images.shape[1], float(record.get("crop_pct", 1.0)))
        a = score(module, images, labels, transform, size)
        cfg = {k: v for k, v in record["model"].items() if k not in ("name", "compile")}
        torch.manual_seed(args.seed)
        deeper = create_model("vgg16", num_classes=record["num_classes"], in_chans=record["in_chans"], **cfg)
        init_from_checkpoint(deeper, ckpt, "vgg16", new_head=False)
        module.model = deeper.eval()
        d = score(module, images, labels, transform, size)
        fc = {name: float(p.detach().norm()) for name, p in deeper.named_parameters()
              if p.dim() == 2 and name.endswith("weight")}
        run_results = Path(ckpt).resolve().parents[1] / "results.json"  # <run>/checkpoints/<ckpt>
        epochs = json.loads(run_results.read_text()).get("epochs") if run_results.is_file() else None
        rows.append({"net_a": ckpt, "net_a_run_epochs": epochs, "net_a_test": a, "net_d_start": d,
                     "fc_weight_norms": fc})
        print(f"{ckpt}: A loss {a['loss']:.3f} top1 {a['top1']:.4f}; D at start loss {d['loss']:.3f} "
              f"top1 {d['top1']:.4f} logit std {d['logit_std']:.2f}; FC norms "
              + ", ".join(f"{v:.1f}" for v in fc.values()))
    text = Path("/proc/cpuinfo").read_text()
    flags = sorted(set(re.findall(r"\b(avx512[a-z_0-9]*|avx2|amx[a-z_]*)\b", text)))
    model_name = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    out = {"command": args.command or "python docs/zoo/vgg16_start.py " + " ".join(sys.argv[1:]),
           "images": args.images, "seed": args.seed, "rows": rows,
           "machine": {"cpu_model": model_name.group(1) if model_name else platform.processor(), "cpu_flags": flags,
                       "torch": torch.__version__, "threads": 1}}
    prefix = re.compile("|".join(re.escape(p) for p in sorted({str(ROOT), "/tmp"}, key=len, reverse=True)))
    args.out.write_text(json.dumps(trim(out, prefix), indent=1) + "\n")


if __name__ == "__main__":
    main()
