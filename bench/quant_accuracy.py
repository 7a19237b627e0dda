"""Accuracy of the q8 / q4 formats on a checkpoint (a property to report, not a test).

    flock /work/bigmem.lock /usr/bin/python3 bench/quant_accuracy.py /work/ckpt/mid [--positions 512]

PyTorch reference model (test/reference, f32 compute) run three ways over the same token ids:
with the checkpoint's bf16 weights, and with the LLM's weights (linear layers, LM head, embedding
table) replaced by their q8 / q4 dequantized values (test/quantize_ref.py, bit-identical to the
engine's quantizer), plus alternative 4-bit formats for comparison. Reports, per format:
  - per matmul family (wqkv, wo, w1, w3, w2, output; tok_embeddings for the gather): relative L2 of
    the quantized layer's output against the bf16 weights applied to the *same* input;
  - logits relative L2 against the bf16 run, and the share of positions whose argmax agrees
    (teacher forcing: every position sees the same ids).
Prints a JSON line per format and a markdown table.
"""
import argparse
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'test', 'reference'))
sys.path.insert(0, os.path.join(HERE, '..', 'test'))
from pvc_reference import load_model  # noqa: E402
from quantize_ref import quantize  # noqa: E402


def q4_absmax7(x):
    """MLC q4f16_1 style: symmetric, d = absmax / 7 (f16), q in [-7, 7]."""
    g = x.reshape(x.shape[0], -1, 32)
    d = (np.abs(g).max(axis=2, keepdims=True) / 7.0).astype(np.float16).astype(np.float64)
    q = np.clip(np.rint(g / np.where(d == 0, 1, d)), -7, 7)
    return (q * d).reshape(x.shape)


def q4_zero_point(group):
    """llama.cpp Q4_1 / ORT MatMulNBits with zero points: asymmetric, d = (max - min) / 15, min offset (f16)."""
    def f(x):
        g = x.reshape(x.shape[0], -1, group)
        lo, hi = g.min(axis=2, keepdims=True), g.max(axis=2, keepdims=True)
        d = ((hi - lo) / 15.0).astype(np.float16).astype(np.float64)
        m = lo.astype(np.float16).astype(np.float64)
        q = np.clip(np.rint((g - m) / np.where(d == 0, 1, d)), 0, 15)
        return (q * d + m).reshape(x.shape)
    return f


def ours_group(fmt, group):
    """Our scale rule at another group size (the stored layout needs 32; this is for comparison only)."""
    def f(x):
        rows, K = x.shape
        g = x.reshape(rows * K // group, group)
        # regroup into 32-wide rows sharing one scale: quantize with the group's scale by tiling
        if group == 32:
            return quantize(fmt, x)[1]
        first = np.argmax(np.abs(g), axis=1)[:, None]
        m = np.take_along_axis(g, first, axis=1)
        d = (m / -8.0 if fmt == 'q4' else np.abs(m) / 127.0).astype(np.float16).astype(np.float64)
        lo, hi = (-8, 7) if fmt == 'q4' else (-127, 127)
        q = np.where(d == 0, 0, np.clip(np.rint(g / np.where(d == 0, 1, d)), lo, hi))
        return (q * d).reshape(rows, K)
    return f


FORMATS = {
    'q8 (ours: g32 sym absmax/127, f16 scale)': lambda x: quantize('q8', x)[1],
    'q4 (ours: g32 sym m/-8, f16 scale)': lambda x: quantize('q4', x)[1],
    'q4 g32 sym absmax/7 (MLC q4f16_1 rule)': q4_absmax7,
    'q4 g32 zero point (Q4_1 / MatMulNBits asym)': q4_zero_point(32),
    'q4 g128 sym m/-8': ours_group('q4', 128),
    'q4 g128 zero point (MatMulNBits block 128)': q4_zero_point(128),
}


def family(name):
    return name.split('.')[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('model')
    ap.add_argument('--positions', type=int, default=512)
    ap.add_argument('--formats', default='all', help='comma-separated prefixes of format names')
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    t0 = time.time()
    model = load_model(args.model)
    llm = model.language_model
    vocab = llm.output.weight.shape[0]
    ids = torch.from_numpy(np.random.default_rng(0).integers(0, min(vocab, 92000), args.positions))
    linears = {n: m for n, m in llm.named_modules() if isinstance(m, torch.nn.Linear)}
    emb = llm.model.tok_embeddings
    # the bf16 weights, kept as bf16 (exact) while the model holds the quantized ones
    originals = {n: m.weight.detach().to(torch.bfloat16).clone() for n, m in linears.items()}
    emb_original = emb.weight.detach().to(torch.bfloat16).clone()
    ref_logits = llm(emb(ids))
    ref_argmax = ref_logits.argmax(dim=-1)
    print(f'# loaded and ran bf16 in {time.time() - t0:.0f} s', file=sys.stderr)

    results = []
    for fmt_name, fn in FORMATS.items():
        if args.formats != 'all' and not any(fmt_name.startswith(p) for p in args.formats.split(',')):
            continue
        t1 = time.time()
        group = 128 if 'g128' in fmt_name else 32

        def quantized(w):
            # rows that are not whole groups stay bf16, as the engine's quantizeRule leaves them
            return w.float() if w.shape[1] % group else torch.from_numpy(fn(w.double().numpy()))

        for n, m in linears.items():
            m.weight.copy_(quantized(originals[n]))
        emb.weight.copy_(quantized(emb_original))
        err = {}

        def hook(name):
            def h(mod, inputs, out):
                want = F.linear(inputs[0], originals[name].float())
                e = err.setdefault(family(name), [0.0, 0.0])
                e[0] += float(((out.double() - want.double()) ** 2).sum())
                e[1] += float((want.double() ** 2).sum())
            return h

        handles = [m.register_forward_hook(hook(n)) for n, m in linears.items()]
        embeds = emb(ids)
        want = emb_original.float()[ids]
        err['tok_embeddings'] = [float(((embeds.double() - want.double()) ** 2).sum()), float((want.double() ** 2).sum())]
        logits = llm(embeds)
        for h in handles:
            h.remove()
        row = {
            'format': fmt_name,
            'families': {k: (v[0] / v[1]) ** 0.5 for k, v in err.items()},
            'logits_rel_l2': float(((logits.double() - ref_logits.double()).norm() / ref_logits.double().norm())),
            'argmax_agreement': float((logits.argmax(dim=-1) == ref_argmax).double().mean()),
            'seconds': time.time() - t1,
        }
        results.append(row)
        print(json.dumps(row), flush=True)

    fams = ['wqkv', 'wo', 'w1', 'w3', 'w2', 'output', 'tok_embeddings']
    print(f'\n{args.model}, {args.positions} positions of random ids (teacher forcing)\n')
    print('| format | ' + ' | '.join(fams) + ' | logits rel L2 | argmax agreement |')
    print('|---|' + '---|' * (len(fams) + 2))
    for r in results:
        print(f"| {r['format']} | " + ' | '.join(f"{r['families'].get(f, float('nan')):.2e}" for f in fams) + f" | {r['logits_rel_l2']:.2e} | {100 * r['argmax_agreement']:.1f}% |")


if __name__ == '__main__':
    main()
