"""Train the demo model: ``scconv_cnn`` on scikit-learn's digits (8×8, upscaled to 32×32).

Seeded and CPU-only; a few minutes on 2 cores. Writes the checkpoint (scconv-deploy format, with
mean/std, class names and the measured accuracies in its metadata) and its model card::

    python models/train_digits.py --variant seed          # -> models/scconv_cnn_digits_seed.pt + .md
    python models/train_digits.py --variant head
    python models/train_digits.py --write-data            # regenerate scconv_deploy/data/digits.npz
                                                          # from scikit-learn (pip install -e '.[data]')
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scconv_deploy import deploy_summary, to_deploy
from scconv_deploy.checkpoint import save_checkpoint
from scconv_deploy.datasets import CLASS_NAMES, load_digits, make_digits_npz
from scconv_deploy.models import count_macs, create

HERE = Path(__file__).resolve().parent


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def shift_augment(x: torch.Tensor, gen: torch.Generator, pad: int = 2) -> torch.Tensor:
    """Random translation by up to ``pad`` pixels (zero padding, then a random crop)."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy, dx = torch.randint(0, 2 * pad + 1, (2, n), generator=gen)
    return torch.stack([padded[i, :, dy[i] : dy[i] + h, dx[i] : dx[i] + w] for i in range(n)])


def train(variant: str, epochs: int, seed: int) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(seed)
    torch.set_num_threads(2)
    gen = torch.Generator().manual_seed(seed)
    (xtr, ytr), (xva, yva), (xte, yte) = (load_digits(s) for s in ("train", "val", "test"))
    mean, std = float(xtr.mean()), float(xtr.std())
    norm = lambda a: (torch.from_numpy(a) - mean) / std  # noqa: E731
    xtr, xva, xte = norm(xtr), norm(xva), norm(xte)
    ytr, yva, yte = (torch.from_numpy(a) for a in (ytr, yva, yte))
    # The padding value of the shift augmentation is the normalised background (0 in pixel space).
    background = (0.0 - mean) / std

    kwargs = {"in_chans": 1, "num_classes": 10, "variant": variant}
    model = create("scconv_cnn", **kwargs)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    steps = epochs * ((len(ytr) + 63) // 64)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, total_steps=steps)
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(ytr), generator=gen)
        for i in range(0, len(order), 64):
            idx = order[i : i + 64]
            xb = shift_augment(xtr[idx] - background, gen) + background
            loss = F.cross_entropy(model(xb), ytr[idx], label_smoothing=0.05)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        print(
            f"epoch {epoch + 1:2d}/{epochs}  loss {loss.item():.3f}  val acc {accuracy(model, xva, yva):.4f}"
        )
    seconds = time.perf_counter() - start
    model.eval()
    result = {
        "arch": "scconv_cnn",
        "arch_kwargs": kwargs,
        "variant": variant,
        "scconv_variants": deploy_summary(to_deploy(model)).variants,
        "mean": [mean],
        "std": [std],
        "train_accuracy": accuracy(model, xtr, ytr),
        "val_accuracy": accuracy(model, xva, yva),
        "test_accuracy": accuracy(model, xte, yte),
        "n_train": len(ytr),
        "n_val": len(yva),
        "n_test": len(yte),
        "epochs": epochs,
        "seed": seed,
        "train_seconds": round(seconds, 1),
        **count_macs(model, (1, 1, 32, 32)),
    }
    return model, result


CARD = """# {name}

The toolkit's demo model: `scconv_cnn` (three SCConv layers, {params:,} parameters,
{mmacs:.1f} M MACs per 32×32 image) trained on real data that ships offline.

| | |
|---|---|
| architecture | `create("scconv_cnn", **{arch_kwargs})` |
| SCConv variant | `{variant}` — blocks: {scconv_variants} |
| input | 1×32×32 grey, `(pixel/16 − mean) / std`, mean {mean[0]:.4f}, std {std[0]:.4f} (in the metadata) |
| classes | digits 0–9 |
| **held-out test accuracy** | **{test_accuracy:.2%}** ({n_test} images) |
| validation accuracy | {val_accuracy:.2%} ({n_val} images) |
| training accuracy | {train_accuracy:.2%} ({n_train} images, without augmentation) |

## Data
scikit-learn's bundled copy of the UCI *Optical Recognition of Handwritten Digits* (1,797 8×8
images, values 0–16), stored in `scconv_deploy/data/digits.npz` with a fixed stratified split
(seed 0): 70 % train, 10 % validation, 20 % test. Images are scaled to [0, 1], upscaled
bilinearly to 32×32 (`scconv_deploy.datasets.load_digits`) and normalised with the training
split's mean and std.

## Training
`python models/train_digits.py --variant {variant}`: AdamW (lr 3e-3, one-cycle, weight decay
1e-4), batch 64, {epochs} epochs, label smoothing 0.05, random shifts of up to 2 px; seed {seed};
{train_seconds} s on this machine's 2 CPU cores. The test split is used only for the number above;
`tests/test_demo_model.py` re-checks it.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description="Train the demo SCConv model on the digits data.")
    ap.add_argument("--variant", choices=["seed", "head"], default="seed")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-data", action="store_true", help="regenerate the digits npz from scikit-learn")
    args = ap.parse_args()
    if args.write_data:
        target = HERE.parent / "scconv_deploy" / "data" / "digits.npz"
        make_digits_npz(target)
        print(f"wrote {target}")
        return
    model, result = train(args.variant, args.epochs, args.seed)
    name = f"scconv_cnn_digits_{args.variant}"
    meta = {
        "input_shape": [1, 1, 32, 32],
        "mean": result["mean"],
        "std": result["std"],
        "class_names": CLASS_NAMES,
        "dataset": "sklearn digits 8x8 -> 32x32 bilinear, [0,1] then (x-mean)/std; split seed 0 70/10/20",
        "accuracy": {k: result[k] for k in ("train_accuracy", "val_accuracy", "test_accuracy")},
        "notes": f"models/train_digits.py --variant {args.variant} --epochs {args.epochs} --seed {args.seed}",
    }
    path = save_checkpoint(
        model, HERE / f"{name}.pt", arch=result["arch"], arch_kwargs=result["arch_kwargs"], **meta
    )
    card = CARD.format(name=name, mmacs=result["macs"] / 1e6, **result)
    (HERE / f"{name}.md").write_text(card)
    print(json.dumps(result, indent=2))
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB) and {name}.md")


if __name__ == "__main__":
    main()
