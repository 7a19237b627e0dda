"""Accuracy of the q8 / q4 formats on a checkpoint (a property to report, not a test).

    /usr/bin/python3 bench/quant_accuracy.py /work/ckpt/mid [--positions 512] [--formats 'q8 (ours,q4 (ours' | all] [--self-test]

The LLM of the PyTorch reference (test/reference, f32 compute) over the same random token ids with
teacher forcing, run with the checkpoint's bf16 weights and with the LLM's weights (linear layers,
LM head, embedding table) replaced by their q8 / q4 dequantized values (test/quantize_ref.py,
bit-identical to the engine's quantizer), plus alternatives for comparison. Streams the checkpoint a
layer at a time with every format's hidden states side by side, so memory stays at one layer's
weights per format (~1 GB for mid) whatever the model size. Reports, per format:
  - per matmul family (wqkv, wo, w1, w3, w2, output; tok_embeddings for the gather): relative L2 of
    the quantized layer's output against the bf16 weights applied to the *same* input (the first
    --family-positions positions);
  - logits relative L2 against the bf16 run, and the share of positions whose argmax agrees.
Prints a JSON line per format and a markdown table.

Every f32 matrix product (linear layers, LM head, attention's two products) goes through oneDNN
(`matmul`, below): Debian's PyTorch has only the generic reference BLAS, ~10x slower. A check at
startup compares that path against float64 products before anything is measured (`--self-test` runs
only the check).
"""
import argparse
import contextlib
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
from pvc_reference import InternLM2DecoderLayer, InternLM2RMSNorm, parse_config  # noqa: E402
from safetensors_io import bf16_bits_to_f32, checkpoint_files, read_header  # noqa: E402
from quantize_ref import quantize  # noqa: E402


_linear, _matmul = F.linear, torch.Tensor.__matmul__


def matmul(a, b):
    """a [..., n, K] @ b [..., K, m] for f32 tensors through oneDNN's f32 inner product (f32
    accumulation); anything else (other dtypes, broadcasting) through PyTorch's own path."""
    if a.dtype != torch.float32 or b.dtype != torch.float32 or a.dim() < 2 or b.dim() < 2 or a.shape[:-2] != b.shape[:-2]:
        return _matmul(a, b)
    matmul.calls += 1
    a2, bt = a.reshape(-1, *a.shape[-2:]), b.transpose(-1, -2).reshape(-1, b.shape[-1], b.shape[-2])
    out = [torch._C._nn.mkldnn_linear(x.contiguous().to_mkldnn(), w.contiguous().to_mkldnn(), None).to_dense() for x, w in zip(a2, bt)]
    return torch.stack(out).reshape(*a.shape[:-1], b.shape[-1])


matmul.calls = 0


def linear(x, w, bias=None):
    if bias is not None or w.dim() != 2:
        return _linear(x, w, bias)
    return matmul(x.reshape(-1, x.shape[-1]), w.t()).reshape(*x.shape[:-1], w.shape[0])


@contextlib.contextmanager
def onednn_f32():
    """F.linear (nn.Linear, the LM head) and the @ of the reference's attention through matmul."""
    F.linear, torch.Tensor.__matmul__ = linear, matmul
    try:
        yield
    finally:
        F.linear, torch.Tensor.__matmul__ = _linear, _matmul


def self_test(lc, tol=1e-5):
    """The oneDNN path against float64 products (rel L2 <= tol, f32 accumulation over K up to 3585) on
    odd shapes, and a decoder layer of this config's shapes against the same layer without it, so a
    wrong fast path (or one the layer does not take) cannot change the reported numbers."""
    g = torch.Generator().manual_seed(1)

    worst = [0.0]

    def check(what, got, want):
        e = float((got.double() - want).norm() / want.norm())
        assert got.dtype == torch.float32 and got.shape == want.shape and e <= tol, f'oneDNN self-test: {what}: rel L2 {e:.2e} (shape {list(got.shape)})'
        worst[0] = max(worst[0], e)

    with onednn_f32():
        for n, K, N in [(1, 33, 7), (37, 1025, 129), (65, 3585, 1023), (3, 7, 5)]:
            x, w = torch.randn(n, K, generator=g), torch.randn(N, K, generator=g)
            check(f'F.linear {n}x{K}->{N}', F.linear(x, w), x.double() @ w.double().t())
            check(f'F.linear {n}x3x{K}->{N}', F.linear(x.expand(3, n, K), w), x.double().expand(3, n, K) @ w.double().t())
        for h, n, d, L in [(3, 17, 129, 31), (8, 64, 128, 64)]:
            q, k = torch.randn(h, n, d, generator=g), torch.randn(h, L, d, generator=g)
            check(f'{h}x{n}x{d} @ ({h}x{L}x{d})^T', q @ k.transpose(1, 2), q.double() @ k.double().transpose(1, 2))
            p = torch.rand(h, n, L, generator=g)
            check(f'{h}x{n}x{L} @ {h}x{L}x{d}', p @ k, p.double() @ k.double())
        layer = InternLM2DecoderLayer(lc)
        for t in layer.parameters():
            t.copy_(torch.randn(t.shape, generator=g) * (0.05 if t.dim() == 2 else 1))
        x = torch.randn(45, lc.hidden_size, generator=g)
        calls = matmul.calls
        got = layer(x, 0, None)
        assert matmul.calls - calls == 7, f'oneDNN self-test: the decoder layer took the oneDNN path {matmul.calls - calls} times, not 7'
    # the reference's softmax is f32 whatever its input, so the layer's reference is PyTorch's own f32 path
    check('decoder layer against its f32 PyTorch path', got, layer(x, 0, None).double())
    return worst[0]


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


def act8(x):
    """The int8 GEMVs' activations (dot4I8Packed, SWAR) (kernels/matmul_xq8.wgsl): int8 per 32-group, power-of-two scale
    (inputs of weights that are not whole groups stay f32: those weights stay bf16)."""
    if x.shape[-1] % 32:
        return x
    g = x.double().reshape(x.shape[0], -1, 32)
    am = g.abs().amax(dim=2, keepdim=True)
    _, e = torch.frexp(am)
    d = torch.where(am > 0, torch.ldexp(torch.ones_like(am), e - 7), torch.zeros_like(am))
    q = torch.where(am > 0, torch.clamp(torch.round(g / torch.where(am > 0, d, torch.ones_like(d))), -127, 127), torch.zeros_like(g))
    return (q * d).reshape(x.shape).float()


FORMATS['q4 + int8 activations (dot4I8Packed path)'] = FORMATS['q4 (ours: g32 sym m/-8, f16 scale)']
FORMATS['q8 + int8 activations (SWAR path)'] = FORMATS['q8 (ours: g32 sym absmax/127, f16 scale)']
FAMILIES = ['wqkv', 'wo', 'w1', 'w3', 'w2', 'output', 'tok_embeddings']


class Checkpoint:
    """Rows of bf16 / f32 tensors read on demand from a (sharded) safetensors checkpoint, as f32
    (read, not mapped: mapped pages would count in the process's RSS, the whole checkpoint by the end)."""

    def __init__(self, model_dir):
        weight_map, files = checkpoint_files(model_dir)
        self.where = {}
        for path in files:
            header, _, start = read_header(path)
            fd = os.open(path, os.O_RDONLY)
            for name, info in header.items():
                self.where[name] = (fd, start, info)

    def shape(self, name):
        return self.where[name][2]['shape']

    def rows(self, name, r0, r1):
        fd, start, info = self.where[name]
        shape = info['shape']
        row = int(np.prod(shape[1:])) if len(shape) > 1 else 1
        size = {'BF16': 2, 'F16': 2, 'F32': 4}[info['dtype']]
        b = start + info['data_offsets'][0] + r0 * row * size
        raw = np.frombuffer(os.pread(fd, (r1 - r0) * row * size, b), dtype={'BF16': np.uint16, 'F16': np.float16, 'F32': np.float32}[info['dtype']])
        t = bf16_bits_to_f32(raw) if info['dtype'] == 'BF16' else torch.from_numpy(raw.astype(np.float32))
        return t.reshape([r1 - r0] + list(shape[1:]))

    def tensor(self, name):
        return self.rows(name, 0, self.shape(name)[0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('model')
    ap.add_argument('--positions', type=int, default=512)
    ap.add_argument('--family-positions', type=int, default=64)
    ap.add_argument('--formats', default='q8 (ours,q4 (ours,q4 + int8', help='comma-separated prefixes of format names, or all')
    ap.add_argument('--threads', type=int, default=1)
    ap.add_argument('--self-test', action='store_true', help='only check the oneDNN f32 path and exit')
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    torch.set_num_threads(args.threads)
    t0 = time.time()
    with open(os.path.join(args.model, 'config.json')) as f:
        lc = parse_config(json.load(f)).llm
    worst = self_test(lc)
    print(f'# oneDNN f32 self-test passed (worst rel L2 {worst:.1e}) in {time.time() - t0:.1f} s', file=sys.stderr, flush=True)
    if args.self_test:
        return
    with onednn_f32():
        measure(args, lc, t0)


def measure(args, lc, t0):
    ck = Checkpoint(args.model)
    pre = 'language_model.'
    vocab = ck.shape(pre + 'output.weight')[0]
    ids = np.random.default_rng(0).integers(0, min(vocab, 92000), args.positions)
    fmts = [n for n in FORMATS if args.formats == 'all' or any(n.startswith(p) for p in args.formats.split(','))]
    fp = args.family_positions

    def quantized(fmt, w):
        # rows that are not whole groups stay bf16, as the engine's quantizeRule leaves them
        group = 128 if 'g128' in fmt else 32
        return w if w.shape[1] % group else torch.from_numpy(FORMATS[fmt](w.double().numpy())).float()

    err = {f: {} for f in fmts}

    def add_err(fmt, fam, got, want):
        e = err[fmt].setdefault(fam, [0.0, 0.0])
        e[0] += float(((got.double() - want.double()) ** 2).sum())
        e[1] += float((want.double() ** 2).sum())

    # embeddings: the rows of the ids only (quantization is per row)
    emb_name = pre + 'model.tok_embeddings.weight'
    uniq, inverse = np.unique(ids, return_inverse=True)
    table = torch.cat([ck.rows(emb_name, int(i), int(i) + 1) for i in uniq])
    h = {'bf16': table[inverse]}
    for f in fmts:
        h[f] = quantized(f, table)[inverse]
        add_err(f, 'tok_embeddings', h[f], h['bf16'])

    layer = InternLM2DecoderLayer(lc)
    linears = {n: m for n, m in layer.named_modules() if isinstance(m, torch.nn.Linear)}
    state = {'fmt': None, 'bf16': {}}

    def pre_hook(name):
        def hk(mod, inputs):
            state['x'] = inputs[0]
            if state['fmt'] is not None and 'int8 activations' in state['fmt']:
                return (act8(inputs[0]),)
        return hk

    def hook(name):
        def hk(mod, inputs, out):
            if state['fmt'] is not None:
                add_err(state['fmt'], family(name), out[:fp], F.linear(state['x'][:fp], state['bf16'][name]))
        return hk

    for n, m in linears.items():
        m.register_forward_pre_hook(pre_hook(n))
        m.register_forward_hook(hook(n))
    for i in range(lc.num_layers):
        sd = {k: ck.tensor(f'{pre}model.layers.{i}.{k}') for k in layer.state_dict()}
        state['bf16'] = {n: sd[n + '.weight'] for n in linears}
        for f in ['bf16'] + fmts:
            state['fmt'] = None if f == 'bf16' else f
            layer.load_state_dict({k: (quantized(f, v) if f != 'bf16' and k[:-len('.weight')] in linears else v) for k, v in sd.items()})
            h[f] = layer(h[f], 0, None)
        print(f'# layer {i} done at {time.time() - t0:.0f} s', file=sys.stderr, flush=True)

    norm = InternLM2RMSNorm(lc.hidden_size, lc.eps)
    norm.weight.copy_(ck.tensor(pre + 'model.norm.weight'))
    xs = {f: norm(h[f]) for f in h}
    # the LM head in blocks of rows: logits differences and running argmax per format
    n = args.positions
    best = {f: (torch.full((n,), -float('inf'), dtype=torch.float64), torch.zeros(n, dtype=torch.long)) for f in xs}
    dl = {f: [0.0, 0.0] for f in fmts}
    out_name = pre + 'output.weight'
    for r0 in range(0, vocab, 8192):
        r1 = min(vocab, r0 + 8192)
        w = ck.rows(out_name, r0, r1)
        ref = F.linear(xs['bf16'], w)
        for f in ['bf16'] + fmts:
            wf = w if f == 'bf16' else quantized(f, w)
            logits = ref if f == 'bf16' else F.linear(act8(xs[f]) if 'int8 activations' in f else xs[f], wf)
            if f != 'bf16':
                add_err(f, 'output', logits[:fp], F.linear(xs[f][:fp], w))
                dl[f][0] += float(((logits.double() - ref.double()) ** 2).sum())
                dl[f][1] += float((ref.double() ** 2).sum())
            v, a = logits.double().max(dim=1)
            take = v > best[f][0]
            best[f] = (torch.where(take, v, best[f][0]), torch.where(take, a + r0, best[f][1]))
    print(f'# done in {time.time() - t0:.0f} s', file=sys.stderr)

    results = []
    for f in fmts:
        row = {
            'format': f,
            'families': {k: (v[0] / v[1]) ** 0.5 for k, v in err[f].items()},
            'logits_rel_l2': (dl[f][0] / dl[f][1]) ** 0.5,
            'argmax_agreement': float((best[f][1] == best['bf16'][1]).double().mean()),
        }
        results.append(row)
        print(json.dumps(row), flush=True)

    print(f'\n{args.model}, {args.positions} positions of random ids (teacher forcing); families over the first {fp}\n')
    print('| format | ' + ' | '.join(FAMILIES) + ' | logits rel L2 | argmax agreement |')
    print('|---|' + '---|' * (len(FAMILIES) + 2))
    for r in results:
        print(f"| {r['format']} | " + ' | '.join(f"{r['families'].get(f, float('nan')):.2e}" for f in FAMILIES) + f" | {r['logits_rel_l2']:.2e} | {100 * r['argmax_agreement']:.1f}% |")


if __name__ == '__main__':
    main()
