"""How far one SGD step moves the logits of each ResNet at initialisation (docs/zoo.md, the ResNet-50 row): the
squared norm of the classifier's input features and the mean dot product of two images' features, measured on
the zoo's input size with the network as created for 10 classes and one gray channel, in training mode (batch
statistics, as in training), on one batch of N(0, 1) images.

For a linear classifier z = W f + b, one SGD step of size lr changes image j's logits by -lr · Σ_i (f_i · f_j) ∂L/∂z_i
(plus the bias term): at the same learning rate and loss gradient the logits move in proportion to the features'
dot products. A network whose features have 3× the dot products of another's takes 3× larger steps in its logits.

    python docs/zoo/classifier_input_scale.py docs/zoo/classifier_input_scale.json

One thread, fp32, seed 0 for weights and images."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from cnnbench.hardware import machine_record  # noqa: E402
from cnnbench.models.registry import create_model  # noqa: E402

# (model, input side) as the zoo rows train them: the ImageNet ResNets at 32², the CIFAR ResNets at 28².
NETWORKS = [("resnet18", 32), ("resnet50", 32), ("resnet20", 28), ("resnet56", 28)]


def feature_scale(name: str, side: int, batch: int) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=1).train()
    classifier = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    seen: dict[str, torch.Tensor] = {}
    classifier.register_forward_hook(lambda _m, inputs, _out: seen.__setitem__("features", inputs[0]))
    with torch.no_grad():
        logits = model(torch.randn(batch, 1, side, side))
    features = seen["features"]
    gram = features @ features.T
    off_diagonal = (gram.sum() - gram.diagonal().sum()) / (batch * (batch - 1))
    return {"model": name, "input_side": side, "features": features.shape[1],
            "mean_squared_norm": round(float(gram.diagonal().mean()), 1),
            "mean_dot_product_of_two_images": round(float(off_diagonal), 1),
            "logit_std": round(float(logits.std()), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = [feature_scale(name, side, args.batch) for name, side in NETWORKS]
    reference = next(r for r in rows if r["model"] == "resnet18")
    for r in rows:
        r["dot_product_vs_resnet18"] = round(r["mean_dot_product_of_two_images"]
                                             / reference["mean_dot_product_of_two_images"], 2)
    out = {"command": "python docs/zoo/classifier_input_scale.py " + " ".join(sys.argv[1:]),
           "batch": args.batch, "images": "N(0, 1), seed 0", "mode": "training (batch statistics), fp32",
           "networks": rows, "machine": machine_record()}
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    for r in rows:
        print(f"{r['model']} at {r['input_side']}²: {r['features']} features, squared norm "
              f"{r['mean_squared_norm']}, dot product of two images {r['mean_dot_product_of_two_images']} "
              f"({r['dot_product_vs_resnet18']}× ResNet-18's), logit std {r['logit_std']}")


if __name__ == "__main__":
    main()
