"""``python -m scconv_deploy.models [NAMES...] [--input-shape 1,3,224,224]``: parameters and GMACs."""

from __future__ import annotations

import argparse

from . import count_macs, create, list_models


def _shape(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(d) for d in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a comma-separated shape like 1,3,224,224"
        ) from None


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m scconv_deploy.models", description="Parameters and multiply-accumulates per model."
    )
    parser.add_argument(
        "names",
        nargs="*",
        default=["resnet50", "scconv_resnet50"],
        help=f"models: {', '.join(list_models())}",
    )
    parser.add_argument("--input-shape", type=_shape, default=(1, 3, 224, 224), help="N,C,H,W")
    args = parser.parse_args(argv)
    shape = ",".join(map(str, args.input_shape))
    width = max(len("model"), *map(len, args.names))
    print(f"{'model':<{width}}  {'params (M)':>10}  {'GMACs':>7}  input {shape}")
    for name in args.names:
        counts = count_macs(create(name), args.input_shape)
        print(f"{name:<{width}}  {counts['params'] / 1e6:>10.2f}  {counts['macs'] / 1e9:>7.3f}")


if __name__ == "__main__":
    main()
