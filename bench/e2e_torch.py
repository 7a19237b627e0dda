"""PyTorch CPU bf16 peer of bench/e2e.ts, run with Debian's /usr/bin/python3 (torch 1.13, oneDNN).

The model is test/reference's PVCInternVL (the independent PyTorch implementation) with the
checkpoint's bf16 tensors (no float32 copy, so the full preset fits) and run under
torch.autocast('cpu', bfloat16): every linear, convolution and matmul in bf16; what the reference
computes in float32 (RMSNorm's variance, RoPE, softmax) stays there. The tensors are read into
memory when it holds them with RESERVE to spare (this VM has no swap, so they stay resident: mapped
files were paged out between decode steps, bench/RESULTS.md), else mapped from the files.

Reads one JSON job on stdin, prints one JSON line per measured stage (milliseconds, medians):
  {"model": DIR, "stages": [...], "image": PATH, "video": PATH, "frames": N, "max_num": [1, 12],
   "prefill": [64, 512], "kv": [128, 2048], "tokens": 3, "ttft": [{"max_num": 12, "ids": [...]}]}
"""
import json
import math
import mmap
import os
import resource
import statistics
import sys
import time

import torch
from torch import nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'test', 'reference'))
import pvc_reference as ref  # noqa: E402
from preprocess import load_image, load_video  # noqa: E402
from safetensors_io import read_header  # noqa: E402
from torch_ceiling import linear_job  # noqa: E402

CHUNK = 512  # positions per prefill step, as the engine's PREFILL_CHUNK (the reference's scores are [heads, n, keys])
DTYPES = {'BF16': torch.bfloat16, 'F32': torch.float32, 'F16': torch.float16}


def emit(row):
    print(json.dumps(row), flush=True)


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return (time.perf_counter() - t) * 1e3, out


RESERVE = 4 << 30  # memory left for activations and the rest when the weights are read in


def available_bytes():
    with open('/proc/meminfo') as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith('MemAvailable:'))


def checkpoint_tensors(model_dir):
    """name -> tensor over the checkpoint files' bytes, and whether they were read in (else private
    mappings: pages are read on use, never copied)."""
    index = os.path.join(model_dir, 'model.safetensors.index.json')
    files = sorted(set(json.load(open(index))['weight_map'].values())) if os.path.exists(index) else ['model.safetensors']
    paths = [os.path.join(model_dir, name) for name in files]
    resident = sum(os.path.getsize(p) for p in paths) + RESERVE < available_bytes()
    out = {}
    for path in paths:
        header, _, start = read_header(path)
        with open(path, 'rb') as f:
            if resident:
                mm = bytearray(os.path.getsize(path))
                f.readinto(mm)
            else:
                mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        for key, info in header.items():
            b, e = info['data_offsets']
            dtype = DTYPES[info['dtype']]
            count = (e - b) // torch.empty(0, dtype=dtype).element_size()
            out[key] = torch.frombuffer(mm, dtype=dtype, count=count, offset=start + b).view(info['shape'])
    return out, resident


def load_bf16(model_dir):
    """The reference model holding the checkpoint tensors (its own parameters are never initialised), and whether they were read in."""
    for cls in (nn.Linear, nn.Conv2d, nn.Embedding, nn.LayerNorm):
        cls.reset_parameters = lambda self: None  # torch.empty pages stay untouched until replaced below
    cfg = ref.parse_config(json.load(open(os.path.join(model_dir, 'config.json'))))
    tensors, resident = checkpoint_tensors(model_dir)
    model = ref.PVCInternVL(cfg, {k: list(t.shape) for k, t in tensors.items()})
    names = {n for n, _ in model.named_parameters()}
    if names != set(tensors):
        raise SystemExit(f'checkpoint and reference differ: {sorted(names ^ set(tensors))[:5]}')
    for key, t in tensors.items():
        owner, _, attr = key.rpartition('.')
        setattr(model.get_submodule(owner), attr, nn.Parameter(t, requires_grad=False))
    return model.eval(), resident


class VisionSplit:
    """Time spent in the temporal modules (forward hooks; CPU ops are synchronous)."""
    def __init__(self, model):
        self.ms, self.t0 = 0.0, None
        for name, m in model.vision_model.named_modules():
            if name.split('.')[-1] in ('temporal_embedder', 'temporal_norm', 'temporal_attn', 'adaLN_modulation'):
                m.register_forward_pre_hook(self.start)
                m.register_forward_hook(self.stop)

    def start(self, *_):
        self.t0 = time.perf_counter()

    def stop(self, *_):
        self.ms += (time.perf_counter() - self.t0) * 1e3


def encode(model, pixels, plan, split=None):
    """Vision rows of one temporal sequence; returns (rows, {vit, temporal, projector} ms)."""
    before = split.ms if split else 0
    t0 = time.perf_counter()
    frames = pixels[plan.tiles]
    x = model.vision_model(frames, plan, model.switches)[model.cfg.select_layer]
    t1 = time.perf_counter()
    x = x[:, 1:]
    g = int(round(x.shape[1] ** 0.5))
    x = ref.pixel_shuffle(x.reshape(x.shape[0], g, g, -1), model.cfg.downsample_ratio, model.cfg.ps_version)
    rows = model.mlp1(x.reshape(x.shape[0], -1, x.shape[-1])).reshape(-1, model.cfg.llm.hidden_size)
    t2 = time.perf_counter()
    temporal = (split.ms - before) if split else 0
    return rows, {'vit': (t1 - t0) * 1e3 - temporal, 'temporal': temporal, 'projector': (t2 - t1) * 1e3}


def prefill(model, embeds, cache):
    """The prompt through the decoder layers in steps of CHUNK positions; the LM head on the last row only, as the engine does."""
    lm = model.language_model
    for s in range(0, embeds.shape[0], CHUNK):
        x = embeds[s:s + CHUNK]
        for layer, layer_cache in zip(lm.model.layers, cache):
            x = layer(x, s, layer_cache)
    return int(lm.output(lm.model.norm(x[-1:])).argmax())


def random_ids(n, vocab):
    return torch.tensor([1000 + (i * 7919) % (vocab - 2000) for i in range(n)])


def image_pixels(model, path, max_num):
    c = model.cfg
    return load_image(path, c.vision.image_size, 1, max_num, True)


def main():
    job = json.load(sys.stdin)
    stages = set(job['stages'])
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    with torch.no_grad():
        ms = linear_job({'m': 512, 'k': 4096, 'n': 4096})
        emit({'stage': 'ceiling', 'gemm_gflop_s': 2 * 512 * 4096 * 4096 / ms / 1e6, 'shape': '512x4096->4096 bf16 F.linear'})
    if not stages:
        return
    load_ms, (model, resident) = timed(lambda: load_bf16(job['model']))
    emit({'stage': 'load', 'ms': load_ms, 'note': 'checkpoint read into memory' if resident else 'checkpoint mapped, not read: pages load on first use'})
    c = model.cfg
    lc = c.llm
    repeat = c.image_repeat_time if model.vision_model.has_temporal_embedder else 1
    with torch.no_grad(), torch.autocast('cpu', dtype=torch.bfloat16):
        if 'preprocess' in stages:
            for max_num in job['max_num']:
                times = [timed(lambda: image_pixels(model, job['image'], max_num))[0] for _ in range(3)]
                emit({'stage': 'preprocess', 'what': f'image max_num {max_num}', 'ms': statistics.median(times)})
            ms, _ = timed(lambda: load_video(job['video'], c.vision.image_size, job['frames']))
            emit({'stage': 'preprocess', 'what': f"video {job['frames']} frames", 'ms': ms})
        if 'vision' in stages:
            pixels, _ = load_video(job['video'], c.vision.image_size, job['frames'])
            split = VisionSplit(model)
            plan = ref.video_plan(job['frames'])
            encode(model, pixels, plan)  # warm-up
            runs = [encode(model, pixels, plan, split)[1] for _ in range(2)]
            part = {k: statistics.median(r[k] for r in runs) / job['frames'] for k in runs[0]}
            emit({'stage': 'vision', 'frames': job['frames'], 'ms_per_frame': sum(part.values()), **{f'{k}_ms_per_frame': v for k, v in part.items()}})
        if 'prefill' in stages:
            for n in job['prefill']:
                embeds = model.language_model.model.tok_embeddings(random_ids(n, lc.vocab_size))
                prefill(model, embeds[:min(n, 16)], [{} for _ in range(lc.num_layers)])  # warm-up
                ms, _ = timed(lambda: prefill(model, embeds, [{} for _ in range(lc.num_layers)]))
                emit({'stage': 'prefill', 'tokens': n, 'ms': ms})
        if 'decode' in stages:
            d, g = lc.head_dim, lc.num_kv_heads
            for kv in job['kv']:
                # the cache as a prefill under autocast leaves it: k float32 (RoPE), v bf16; random values cost the same
                layers = [(torch.randn(g, kv, d), torch.randn(g, kv, d).to(torch.bfloat16)) for _ in range(lc.num_layers)]
                e = model.language_model.model.tok_embeddings(torch.tensor([1234]))
                times = []
                for i in range(job['tokens'] + 2):
                    cache = [{'k': k, 'v': v} for k, v in layers]  # the step appends to a copy; the KV length stays kv
                    ms, _ = timed(lambda: int(model.language_model(e, kv, cache)[-1].argmax()))
                    if i >= 2:  # two warm-up steps (oneDNN builds its kernels for new shapes)
                        times.append(ms)
                emit({'stage': 'decode', 'kv': kv, 'ms': statistics.median(times), 'each_ms': times})
        if 'ttft' in stages:  # the LLM's weights fault in from the files on first use: not in the first turn's time
            prefill(model, model.language_model.model.tok_embeddings(random_ids(16, lc.vocab_size)), [{} for _ in range(lc.num_layers)])
        for t in job['ttft'] if 'ttft' in stages else []:
            ids = torch.tensor(t['ids'])
            t0 = time.perf_counter()
            pixels = image_pixels(model, job['image'], t['max_num'])
            t1 = time.perf_counter()
            rows = torch.cat([encode(model, pixels[i:i + 1], ref.image_plan([1], repeat, model.switches.image_frame_order))[0] for i in range(pixels.shape[0])])
            t2 = time.perf_counter()
            prefill(model, model.embed(ids, rows), [{} for _ in range(lc.num_layers)])
            t3 = time.perf_counter()
            emit({'stage': 'ttft', 'max_num': t['max_num'], 'tiles': pixels.shape[0], 'tokens': len(t['ids']), 'ms': (t3 - t0) * 1e3,
                  'preprocess_ms': (t1 - t0) * 1e3, 'vision_ms': (t2 - t1) * 1e3, 'prefill_ms': (t3 - t2) * 1e3})
    emit({'stage': 'memory', 'peak_rss_gib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20})


if __name__ == '__main__':
    main()
