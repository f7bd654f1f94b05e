"""What switching one latent channel's ALD state costs, beside the gradient its logit receives in each state.

For one bundle and one checkpoint with a learned partition, on the bundle's test split with its fixed protocol
(the same setup as ``benchmarks/group_law.py``: ``train.yaml`` + overlays + ``evaluate.yaml``, the fixed seeded
rotations, the network in eval mode), for every latent channel ``c``:

- ``p``: ``sigmoid(alpha_c / T)`` of the checkpoint and its state (varying / invariant under the hard mask);
- ``switch``: the one-shot rotated PSNR with channel ``c``'s state switched (its logit moved just across the
  threshold, so the action *and*, for the hybrid latent, the decoder's view of the channel change) minus the
  checkpoint's own PSNR: negative where the current state is the better one;
- the gradient of each weighted loss term (``loss_r``, ``loss_i``, ``loss_v``) on ``alpha_c`` in the training
  forward pass ``network(x, R, T_R x)`` of the bundle's ``loss``, summed over the first ``--grad_batches`` test
  batches, with the logit placed just on the varying side and just on the invariant side of the threshold
  (``+/- 1e-3``; the straight-through gradient is then the same sigmoid slope in both states).  Gradient descent
  moves ``alpha_c`` against the sign: a negative total pushes the channel towards "varying".

The straight-through estimator is the linearisation of the loss at the current hard mask; the switch column is
the actual change.  Where the first is near zero in the current state while the switch costs decibels, the logit
hears the data only when it is on the wrong side, and Adam's sign-like steps let it drift back to the threshold.

The table is printed and, with ``--out FILE.md``, written atomically.

Example (from the repository root)::

    OMP_NUM_THREADS=2 nice python benchmarks/mask_switch.py --bundle bundles/rotated_mnist_so2 \\
        --overlay blocked.yaml --ckpt bundles/rotated_mnist_so2/models/blocked/model.pt --max_test 300
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from pathlib import Path

import torch

TERMS = ("loss_r", "loss_i", "loss_v")
OFFSET = 1e-3


def _group_law():
    spec = importlib.util.spec_from_file_location("group_law", Path(__file__).resolve().parent / "group_law.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@torch.no_grad()
def _rotated_psnr(net, batches) -> float:
    from monai.metrics import PSNRMetric

    metric = PSNRMetric(max_val=1.0)
    values = [metric(y_pred=net(b["x"], b["rotation"]), y=b["target"]).reshape(-1) for b in batches]
    return torch.cat(values).mean().item()


def _place(ald, alpha0: torch.Tensor, channel: int | None = None, varying: bool | None = None) -> None:
    with torch.no_grad():
        ald.alpha.copy_(alpha0)
        if channel is not None:
            ald.alpha[channel] = ald.threshold + (OFFSET if varying else -OFFSET)


def _term_grads(net, loss_fn, batches, channel: int) -> dict[str, float]:
    weights = loss_fn.weights()
    grads = dict.fromkeys(TERMS, 0.0)
    for b in batches:
        terms = loss_fn.from_outputs(net(b["x"], b["rotation"], b["target"]), b["target"])
        for k in TERMS:
            (g,) = torch.autograd.grad(weights[k] * terms[k], net.ald.alpha, retain_graph=True, allow_unused=True)
            grads[k] += 0.0 if g is None else g[channel].item()
    return grads


def switch_table(net, loss_fn, batches, grad_batches: int) -> list[dict]:
    """One row per latent channel (see the module docstring); ``net.ald.alpha`` is restored afterwards."""
    ald = net.ald
    if ald.alpha is None:
        raise ValueError(f"the network's partition is {ald.partition!r}: only a learned partition has logits.")
    net.eval()
    alpha0 = ald.alpha.detach().clone()
    p = ald.probabilities().detach().clone()
    state = ald.hard_mask().clone()
    rows = []
    try:
        base = _rotated_psnr(net, batches)
        for c in range(ald.num_channels):
            _place(ald, alpha0, c, varying=not bool(state[c]))
            row = {"channel": c, "p": float(p[c]), "varying": bool(state[c]), "base_psnr": base,
                   "switch_db": _rotated_psnr(net, batches) - base}
            for varying in (True, False):
                _place(ald, alpha0, c, varying=varying)
                g = _term_grads(net, loss_fn, batches[:grad_batches], c)
                row["var" if varying else "inv"] = {**g, "total": sum(g.values())}
            rows.append(row)
    finally:
        _place(ald, alpha0)
    return rows


def render(rows: list[dict], command: str) -> str:
    lines = [
        f"`{command}`",
        "",
        f"Checkpoint's one-shot rotated PSNR: {rows[0]['base_psnr']:.3f} dB.",
        "",
        "| channel | p | state | switch (dB) | varying side: loss_r / loss_i / loss_v / total "
        "| invariant side: loss_r / loss_i / loss_v / total |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        sides = [" / ".join(f"{r[s][k]:+.1e}" for k in (*TERMS, "total")) for s in ("var", "inv")]
        lines.append(f"| {r['channel']} | {r['p']:.4f} | {'varying' if r['varying'] else 'invariant'} "
                     f"| {r['switch_db']:+.2f} | {sides[0]} | {sides[1]} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    gl = _group_law()
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bundle", required=True)
    p.add_argument("--ckpt", default=None, help="default: the bundle's ckpt_path")
    p.add_argument("--overlay", action="append", default=[])
    p.add_argument("--set", nargs="+", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--max_test", type=int, default=None)
    p.add_argument("--grad_batches", type=int, default=4, help="test batches the gradients are summed over (>= 1)")
    p.add_argument("--num_threads", type=int, default=0)
    p.add_argument("--out", default=None, help="write the table to this Markdown file")
    args = p.parse_args(argv)
    if args.grad_batches < 1:
        p.error(f"--grad_batches must be >= 1, got {args.grad_batches}")
    if args.num_threads:
        torch.set_num_threads(args.num_threads)
    # group_law's own setup and checks (bundle folder, checkpoint file, max_test, overrides)
    gl_args = gl.build_arg_parser().parse_args(
        ["--bundle", args.bundle, "--timing", "off", *(["--ckpt", args.ckpt] if args.ckpt else []),
         *[x for o in args.overlay for x in ("--overlay", o)], *[x for s in args.set for x in ("--set", *s)],
         *(["--max_test", str(args.max_test)] if args.max_test is not None else [])])
    gl._check_args(p, gl_args)
    setup = gl.load_setup(gl_args)
    from monai_galr.analysis.utils import iterate_batches
    from monai_galr.utils import write_text_atomic

    batches = list(iterate_batches(setup["items"], setup["transform"], setup["eval_batch_size"], setup["device"]))
    rows = switch_table(setup["net"], setup["parser"].get_parsed_content("loss"), batches, args.grad_batches)
    text = render(rows, " ".join([os.path.relpath(__file__), *(sys.argv[1:] if argv is None else argv)]))
    print(text, end="")
    if args.out:
        write_text_atomic(text, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
