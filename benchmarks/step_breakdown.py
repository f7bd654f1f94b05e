"""Where the method's training step spends its time beyond a plain autoencoder step of the same network.

For a bundle's network (its ``train.yaml``, overrides with ``--set key=value``), on random inputs of the bundle's
``spatial_size`` and ``batch_size``, times (CPU process time per call, after one warm-up call, mean of
``--repeats``):

- the plain autoencoder step: ``decode(encode(x))``, MSE, backward;
- ``rotate_image`` of the batch (the target ``T_R x``, no gradients);
- the method's forward + backward on a given target (``forward(x, R, T_R x)``: the encoder on ``x`` with
  gradients, the encoder on ``T_R x`` without, the ALD split, the latent action, the decoder; reconstruction plus
  latent loss);
- its parts: the encoder without gradients, the encoder with forward + backward.

and prints one Markdown table with the ratio of (method + rotation) to the plain step.  The trainer's
per-term ``alpha`` gradients (``alpha_grad_interval``) are not included.  Example::

    OMP_NUM_THREADS=1 python benchmarks/step_breakdown.py --bundle bundles/adrenal_ct_so3 --num_threads 1
"""

from __future__ import annotations

import argparse
import ast
import os
import sys
import time

import torch


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--bundle", required=True, help="bundle folder, e.g. bundles/adrenal_ct_so3")
    p.add_argument("--set", nargs="+", action="append", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--batch_size", type=int, default=0, help="0: the bundle's batch_size")
    p.add_argument("--repeats", type=int, default=3, help="timed calls of each part (after one warm-up)")
    p.add_argument("--num_threads", type=int, default=0, help="torch threads (0: leave torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    config = os.path.join(args.bundle, "configs", "train.yaml")
    if not os.path.isfile(config):
        p.error(f"--bundle {args.bundle!r}: no configs/train.yaml there")

    from monai.bundle import ConfigParser

    from monai_galr.groups import random_rotation, rotate_image

    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    torch.manual_seed(args.seed)
    parser = ConfigParser()
    parser.read_config(config)
    for item in (kv for group in args.set for kv in group):
        if "=" not in item:
            p.error(f"--set expects KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        parser[key] = _value(value)
    net = parser.get_parsed_content("network_def")
    net.train()
    dims = int(parser.get_parsed_content("spatial_dims"))
    size = list(parser.get_parsed_content("spatial_size"))
    batch = args.batch_size or int(parser.get_parsed_content("batch_size"))
    gen = torch.Generator().manual_seed(args.seed)
    x = torch.rand(batch, 1, *size, generator=gen)
    rotation = random_rotation(batch, dims, generator=gen)
    target = rotate_image(x, rotation)

    def plain():
        net.zero_grad()
        net(x).square().mean().backward()

    def rotate():
        with torch.no_grad():
            rotate_image(x, rotation)

    def method():
        net.zero_grad()
        out = net(x, rotation, target)
        ((out["pred"] - target).square().mean() + (out["z_acted"] - out["z_target"]).square().mean()).backward()

    def encode_no_grad():
        with torch.no_grad():
            net.encode(x)

    def encode_fwd_bwd():
        net.zero_grad()
        net.encode(x).square().mean().backward()

    def timed(fn) -> float:
        fn()
        start = time.process_time()
        for _ in range(args.repeats):
            fn()
        return (time.process_time() - start) / args.repeats * 1000.0

    rows = [(name, timed(fn)) for name, fn in (
        ("plain autoencoder step (forward + backward)", plain),
        ("rotate_image of the batch (T_R x)", rotate),
        ("method forward + backward, given T_R x", method),
        ("  of which: encoder without gradients (the T_R x pass)", encode_no_grad),
        ("  for scale: encoder forward + backward", encode_fwd_bwd),
    )]
    ms = dict(rows)
    total = ms["method forward + backward, given T_R x"] + ms["rotate_image of the batch (T_R x)"]
    print(f"{args.bundle}: batch {batch}, spatial size {size}, {torch.get_num_threads()} thread(s), "
          f"CPU process time per call, mean of {args.repeats} after 1 warm-up\n")
    print("| part | ms |\n|---|---|")
    for name, value in rows:
        print(f"| {name} | {value:.1f} |")
    print(f"| method step incl. rotation / plain step | {total:.1f} / {ms[rows[0][0]]:.1f} = "
          f"{total / ms[rows[0][0]]:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
