"""Self-tests of the PyTorch reference: /usr/bin/python3 -m unittest discover -s test/reference -p 'test_*.py'

A tiny random model with the checkpoint names (built here from the spec's name tables, not from the
model) is checked against independent facts: float64 numpy formulas, explicit per-head loops,
KV-cache vs recompute, causality, strict loading, and the dump writer / hook-based dump round trip.
"""
import contextlib
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import hf_dump  # noqa: E402
import make_dumps  # noqa: E402
import preprocess  # noqa: E402
from pvc_reference import (IMG_CONTEXT_ID, LLMConfig, PVCInternVL, Switches, apply_rope, image_plan,  # noqa: E402
                           parse_config, pixel_shuffle, rope_cos_sin, temporal_allowed, video_plan)
from safetensors_io import checkpoint_shapes, load_checkpoint, load_file, save_file, to_f32  # noqa: E402

SEED = int(os.environ.get('TEST_SEED', '0')) or int.from_bytes(os.urandom(4), 'little')
print(f'test_reference: TEST_SEED={SEED}', file=sys.stderr)
TEMPORAL = {1: 6, 2: 9}  # vision layer -> AdaLN chunks

CONFIG = {
    'model_type': 'pvc_internvl', 'architectures': ['PVCInternVLModel'], 'use_temporal': True,
    'force_image_size': 56, 'downsample_ratio': 0.5, 'ps_version': 'v2', 'select_layer': -1,
    'dynamic_image_size': True, 'use_thumbnail': True, 'min_dynamic_patch': 1, 'max_dynamic_patch': 6,
    'image_repeat_time': 4, 'video_repeat_time': 1, 'template': 'internlm2-chat',
    'vision_config': {
        'hidden_size': 32, 'num_attention_heads': 4, 'num_hidden_layers': 3, 'intermediate_size': 48,
        'patch_size': 14, 'image_size': 56, 'layer_norm_eps': 1e-6, 'qkv_bias': True, 'qk_normalization': False,
        'hidden_act': 'gelu', 'norm_type': 'layer_norm'},
    'llm_config': {
        'hidden_size': 48, 'num_attention_heads': 4, 'num_key_value_heads': 2, 'num_hidden_layers': 2,
        'intermediate_size': 80, 'vocab_size': 92553, 'rms_norm_eps': 1e-5, 'rope_theta': 1000000.0,
        'rope_scaling': {'type': 'dynamic', 'factor': 2.0}, 'max_position_embeddings': 32768,
        'hidden_act': 'silu', 'bias': False, 'tie_word_embeddings': False},
}


def spec_names(cfg, temporal):
    """name -> shape, spelled from pvc-architecture.md section 2 and docs/pvc-conventions.md."""
    v, l = cfg['vision_config'], cfg['llm_config']
    c, p, g = v['hidden_size'], v['patch_size'], v['image_size'] // v['patch_size']
    out = {
        'vision_model.embeddings.class_embedding': (1, 1, c),
        'vision_model.embeddings.patch_embedding.weight': (c, 3, p, p),
        'vision_model.embeddings.patch_embedding.bias': (c,),
        'vision_model.embeddings.position_embedding': (1, 1 + g * g, c),
    }
    for i in range(v['num_hidden_layers']):
        pre = f'vision_model.encoder.layers.{i}.'
        for n in ('norm1', 'norm2'):
            out[pre + n + '.weight'] = out[pre + n + '.bias'] = (c,)
        out.update({pre + 'attn.qkv.weight': (3 * c, c), pre + 'attn.qkv.bias': (3 * c,),
                    pre + 'attn.proj.weight': (c, c), pre + 'attn.proj.bias': (c,),
                    pre + 'mlp.fc1.weight': (v['intermediate_size'], c), pre + 'mlp.fc1.bias': (v['intermediate_size'],),
                    pre + 'mlp.fc2.weight': (c, v['intermediate_size']), pre + 'mlp.fc2.bias': (c,),
                    pre + 'ls1': (c,), pre + 'ls2': (c,)})
        if i in temporal:
            k = temporal[i]
            out.update({pre + 'temporal_norm.weight': (c,), pre + 'temporal_norm.bias': (c,),
                        pre + 'temporal_attn.qkv.weight': (3 * c, c), pre + 'temporal_attn.qkv.bias': (3 * c,),
                        pre + 'temporal_attn.proj.weight': (c, c), pre + 'temporal_attn.proj.bias': (c,),
                        pre + 'adaLN_modulation.1.weight': (k * c, c), pre + 'adaLN_modulation.1.bias': (k * c,)})
    if temporal:
        out.update({'vision_model.temporal_embedder.mlp.0.weight': (c, 256), 'vision_model.temporal_embedder.mlp.0.bias': (c,),
                    'vision_model.temporal_embedder.mlp.2.weight': (c, c), 'vision_model.temporal_embedder.mlp.2.bias': (c,)})
    k = round(1 / cfg['downsample_ratio'])
    d_in, d = c * k * k, l['hidden_size']
    out.update({'mlp1.0.weight': (d_in,), 'mlp1.0.bias': (d_in,), 'mlp1.1.weight': (d, d_in), 'mlp1.1.bias': (d,),
                'mlp1.3.weight': (d, d), 'mlp1.3.bias': (d,)})
    hd = d // l['num_attention_heads']
    qkv = (l['num_attention_heads'] + 2 * l['num_key_value_heads']) * hd
    inter, vocab = l['intermediate_size'], l['vocab_size']
    out.update({'language_model.model.tok_embeddings.weight': (vocab, d), 'language_model.model.norm.weight': (d,),
                'language_model.output.weight': (vocab, d)})
    for i in range(l['num_hidden_layers']):
        pre = f'language_model.model.layers.{i}.'
        out.update({pre + 'attention_norm.weight': (d,), pre + 'ffn_norm.weight': (d,),
                    pre + 'attention.wqkv.weight': (qkv, d), pre + 'attention.wo.weight': (d, d),
                    pre + 'feed_forward.w1.weight': (inter, d), pre + 'feed_forward.w3.weight': (inter, d),
                    pre + 'feed_forward.w2.weight': (d, inter)})
    return out


def random_state(shapes, gen):
    """Random weights scaled so that activations stay O(1); rounded to bf16 (as a checkpoint stores them)."""
    out = {}
    for name, shape in shapes.items():
        x = torch.randn(shape, generator=gen)
        if name.endswith(('norm.weight', 'norm1.weight', 'norm2.weight', 'mlp1.0.weight', '_norm.weight')):
            x = 1 + 0.1 * x
        elif name.endswith(('ls1', 'ls2')):
            x = 0.5 + 0.2 * x
        elif name.endswith('bias'):
            x = 0.1 * x
        elif 'adaLN' in name:
            x = 0.3 * x / math.sqrt(shape[1])
        elif len(shape) >= 2 and 'embedding' not in name and 'tok_embeddings' not in name:
            x = x / math.sqrt(int(np.prod(shape[1:])))
        out[name] = x.to(torch.bfloat16).float()
    return out


def tiny_model(switches=None, temporal=TEMPORAL, cfg=CONFIG, seed=SEED):
    shapes = spec_names(cfg, temporal)
    model = PVCInternVL(parse_config(cfg), shapes, switches)
    model.load_state_dict(random_state(shapes, torch.Generator().manual_seed(seed)), strict=True)
    return model.eval()


def write_checkpoint(directory, cfg=CONFIG, seed=SEED):
    """config.json + two BF16 shards with an index + the project's tiny tokenizer."""
    os.makedirs(directory, exist_ok=True)
    state = random_state(spec_names(cfg, TEMPORAL), torch.Generator().manual_seed(seed))
    names = list(state)
    shards = {'model-00001-of-00002.safetensors': names[: len(names) // 2],
              'model-00002-of-00002.safetensors': names[len(names) // 2:]}
    weight_map = {}
    for file, part in shards.items():
        save_file({n: state[n].to(torch.bfloat16) for n in part}, os.path.join(directory, file), {'format': 'pt'})
        weight_map.update({n: file for n in part})
    with open(os.path.join(directory, 'model.safetensors.index.json'), 'w') as f:
        json.dump({'metadata': {}, 'weight_map': weight_map}, f)
    with open(os.path.join(directory, 'config.json'), 'w') as f:
        json.dump(cfg, f)
    shutil.copy(os.path.join(REPO, 'src', 'weights', 'tiny-tokenizer.model'), os.path.join(directory, 'tokenizer.model'))
    return state


class SafetensorsTest(unittest.TestCase):
    def test_round_trip_dtypes_and_metadata(self):
        gen = torch.Generator().manual_seed(SEED)
        x = torch.randn(3, 5, generator=gen)
        tensors = {'f32': x, 'bf16': x.to(torch.bfloat16), 'f16': x.half(), 'i64': torch.arange(7) - 3,
                   'i32': torch.arange(4, dtype=torch.int32), 'empty': torch.zeros(0, 4)}
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, 'a.safetensors')
            save_file(tensors, path, {'case': 'x', 'switches': '{"a": 1}'})
            with open(path, 'rb') as f:
                n = int.from_bytes(f.read(8), 'little')
            self.assertEqual(n % 8, 0)
            back, meta = load_file(path)
        self.assertEqual(meta, {'case': 'x', 'switches': '{"a": 1}'})
        self.assertEqual(list(back), list(tensors))
        for name, t in tensors.items():
            self.assertEqual(back[name].dtype, t.dtype, name)
            self.assertTrue(torch.equal(back[name], t), name)
        # bf16 widening through the bits equals torch's exact cast; writing rounds to nearest even
        self.assertTrue(torch.equal(to_f32(back['bf16']), x.to(torch.bfloat16).float()))
        tie = torch.tensor([1 + 2 ** -8, 1 + 3 * 2 ** -9, -2.5])
        self.assertEqual(tie.to(torch.bfloat16).float().tolist(), [1.0, 1 + 2 ** -7, -2.5])

    def test_sharded_checkpoint(self):
        with tempfile.TemporaryDirectory() as d:
            state = write_checkpoint(d)
            shapes = checkpoint_shapes(d)
            loaded = load_checkpoint(d)
        self.assertEqual(set(shapes), set(state))
        for name, t in state.items():
            self.assertEqual(loaded[name].dtype, torch.bfloat16)
            self.assertTrue(torch.equal(to_f32(loaded[name]), t), name)


class NamesTest(unittest.TestCase):
    def test_strict_load_uses_exactly_the_documented_names(self):
        model = tiny_model()
        names = set(model.state_dict())
        self.assertEqual(names, set(spec_names(CONFIG, TEMPORAL)))
        # every PVC name of docs/pvc-conventions.md, expanded for the temporal layers, is a parameter
        documented = set()
        with open(os.path.join(REPO, 'docs', 'pvc-conventions.md')) as f:
            for line in f:
                ticks = re.findall(r'`([^`]+)`', line) if line.startswith('| `vision_model.') else []
                if not ticks:
                    continue
                full = [ticks[0]] + [ticks[0].rsplit('.', 1)[0] + t for t in ticks[1:] if t.startswith('.')]
                for n in full:
                    documented |= {n.replace('{i}', str(i)) for i in TEMPORAL} if '{i}' in n else {n}
        self.assertEqual(len(documented), 4 + 8 * len(TEMPORAL))
        self.assertTrue(documented <= names, sorted(documented - names))
        # a stray or missing tensor is an error naming it
        state = model.state_dict()
        state['vision_model.encoder.layers.0.extra.weight'] = torch.zeros(1)
        with self.assertRaisesRegex(RuntimeError, 'extra.weight'):
            model.load_state_dict(state, strict=True)
        del state['vision_model.encoder.layers.0.extra.weight'], state['mlp1.3.bias']
        with self.assertRaisesRegex(RuntimeError, 'mlp1.3.bias'):
            model.load_state_dict(state, strict=True)

    def test_temporal_layers_and_chunks_come_from_the_checkpoint(self):
        model = tiny_model()
        layers = model.vision_model.encoder.layers
        self.assertEqual([(l.has_temporal, l.adaln_chunks) for l in layers], [(False, 0), (True, 6), (True, 9)])
        bad = spec_names(CONFIG, TEMPORAL)
        bad['vision_model.encoder.layers.1.adaLN_modulation.1.weight'] = (7 * 32, 32)
        with self.assertRaisesRegex(ValueError, 'k = 6 or 9'):
            PVCInternVL(parse_config(CONFIG), bad)


def np_rope(x, positions, theta, max_pos, factor, total):
    """float64 rotate-half RoPE; x [heads, n, d]."""
    d = x.shape[-1]
    base = theta
    if total > max_pos:
        base = theta * ((factor * total / max_pos) - (factor - 1)) ** (d / (d - 2))
    inv = 1.0 / base ** (np.arange(0, d, 2) / d)
    ang = np.outer(positions, inv)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))
    rot = np.concatenate([-x[..., d // 2:], x[..., :d // 2]], -1)
    return x * cos + rot * sin


def rel_l2(got, want):
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    return float(np.linalg.norm(got - want) / max(np.linalg.norm(want), 1e-300))


class LLMMathTest(unittest.TestCase):
    def test_rope_matches_float64_formula(self):
        rng = np.random.default_rng(SEED)
        x = rng.standard_normal((3, 40, 16))
        for max_pos, start in ((32768, 0), (32768, 1000), (16, 0), (16, 25)):
            lc = LLMConfig(64, 4, 2, 1, 8, 10, 1e-5, 1e6, {'type': 'dynamic', 'factor': 2.0}, max_pos)
            pos = np.arange(start, start + 40)
            cos, sin = rope_cos_sin(torch.tensor(pos), 16, lc, start + 40)
            got = apply_rope(torch.tensor(x, dtype=torch.float32), cos, sin)
            err = rel_l2(got, np_rope(x, pos, 1e6, max_pos, 2.0, start + 40))
            # float32 angles (as InternLM2 computes them) near position 1000 carry ~1e-6 relative error
            self.assertLess(err, 1e-5, f'max_pos {max_pos} start {start}: rel L2 {err}')

    def test_grouped_wqkv_attention_matches_per_head_loop(self):
        model = tiny_model()
        att = model.language_model.model.layers[0].attention
        lc = att.lc
        n, d, hd, G = 11, lc.hidden_size, lc.head_dim, lc.num_heads // lc.num_kv_heads
        x = torch.randn(n, d, generator=torch.Generator().manual_seed(SEED))
        with torch.no_grad():
            got = att(x, 0, None)
        w = att.wqkv.weight.detach().double().numpy()
        xs = x.double().numpy()
        pos = np.arange(n)
        heads = []
        for j in range(lc.num_heads):  # query head j = g*G + i lives in kv group g
            g, i = divmod(j, G)
            base = g * (G + 2) * hd
            q = xs @ w[base + i * hd: base + (i + 1) * hd].T
            k = xs @ w[base + G * hd: base + (G + 1) * hd].T
            v = xs @ w[base + (G + 1) * hd: base + (G + 2) * hd].T
            q = np_rope(q[None], pos, lc.rope_theta, 1 << 30, 1, n)[0]
            k = np_rope(k[None], pos, lc.rope_theta, 1 << 30, 1, n)[0]
            s = q @ k.T / math.sqrt(hd) + np.triu(np.full((n, n), -np.inf), 1)
            p = np.exp(s - s.max(-1, keepdims=True))
            heads.append((p / p.sum(-1, keepdims=True)) @ v)
        want = np.concatenate(heads, -1) @ att.wo.weight.detach().double().numpy().T
        self.assertLess(rel_l2(got, want), 1e-5)

    def test_kv_cache_generation_equals_full_recompute(self):
        model = tiny_model()
        pixels = torch.randn(2, 3, 56, 56, generator=torch.Generator().manual_seed(SEED))
        plan = image_plan([2], 4, 'tile_major')
        rows = len(plan) * model.cfg.tokens_per_frame
        g = torch.Generator().manual_seed(SEED + 1)
        ids = torch.cat([torch.tensor([1, 92543]), torch.randint(3, 1000, (5,), generator=g), torch.tensor([92544]),
                         torch.full((rows,), IMG_CONTEXT_ID), torch.tensor([92545]), torch.randint(3, 1000, (6,), generator=g)])
        with torch.no_grad():
            logits_c, ids_c = model.generate(ids, pixels, plan, 12, use_cache=True)
            logits_r, ids_r = model.generate(ids, pixels, plan, 12, use_cache=False)
        self.assertEqual(ids_c.tolist(), ids_r.tolist())
        self.assertEqual(len(ids_c), 12)
        self.assertTrue(torch.equal(logits_c, logits_r))
        self.assertGreater(len(set(ids_c.tolist())), 1)

    def test_img_context_count_mismatch_is_an_error(self):
        model = tiny_model()
        pixels = torch.zeros(1, 3, 56, 56)
        ids = torch.tensor([1] + [IMG_CONTEXT_ID] * 3)
        with self.assertRaisesRegex(ValueError, r'3 <IMG_CONTEXT> tokens in the prompt but 16 vision rows'):
            model.generate(ids, pixels, image_plan([1], 4, 'tile_major'), 1)
        with self.assertRaisesRegex(ValueError, 'bicubic position interpolation'):
            model.generate(ids, torch.zeros(1, 3, 42, 42), image_plan([1], 4, 'tile_major'), 1)


class VisionTest(unittest.TestCase):
    def test_pixel_shuffle_matches_hand_indexed_rule(self):
        rng = np.random.default_rng(SEED)
        for k in (2, 4):
            grid, c = 4 * k, 3
            x = rng.standard_normal((2, grid, grid, c)).astype(np.float32)
            for version in ('v1', 'v2'):
                got = pixel_shuffle(torch.tensor(x), 1 / k, version).reshape(2, -1, c * k * k).numpy()
                m = grid // k
                want = np.zeros_like(got)
                for f in range(2):
                    for I in range(m):
                        for J in range(m):
                            tok = I * m + J if version == 'v2' else J * m + I
                            for dr in range(k):
                                for dc in range(k):
                                    blk = dr * k + dc
                                    want[f, tok, blk * c:(blk + 1) * c] = x[f, k * I + dr, k * J + dc]
                self.assertTrue(np.array_equal(got, want), f'k={k} {version}')

    def frames_out(self, model, pixels, plan):
        trace = {}
        with torch.no_grad():
            model.vision_model(pixels[plan.tiles], plan, model.switches, trace)
        return trace

    def test_causal_temporal_attention(self):
        pixels = torch.randn(5, 3, 56, 56, generator=torch.Generator().manual_seed(SEED))
        changed = pixels.clone()
        changed[4] += 1
        plan = video_plan(5)
        for mask in ('causal', 'causal_exclusive', 'bidirectional'):
            model = tiny_model(Switches(temporal_mask=mask))
            a, b = self.frames_out(model, pixels, plan), self.frames_out(model, changed, plan)
            last = a['vision.layer.2']
            diff = (last - b['vision.layer.2']).abs().amax(dim=(1, 2))
            if mask == 'bidirectional':
                self.assertGreater(float(diff[0]), 1e-4)
            else:
                self.assertTrue(torch.equal(last[:4], b['vision.layer.2'][:4]), mask)
            self.assertGreater(float(diff[4]), 1e-4)

    def test_temporal_mask_rules(self):
        plan = image_plan([2], 3, 'frame_major')  # frames: t0 t1 t0 t1 t0 t1
        self.assertEqual(plan.tiles, [0, 1, 0, 1, 0, 1])
        causal = temporal_allowed(plan, 'causal').int().tolist()
        self.assertEqual(causal[4], [1, 0, 1, 0, 1, 0])
        excl = temporal_allowed(plan, 'causal_exclusive').int().tolist()
        self.assertEqual(excl[0], [1, 0, 0, 0, 0, 0])
        self.assertEqual(excl[4], [1, 0, 1, 0, 0, 0])

    def test_frame_order_only_permutes_frames(self):
        model_t = tiny_model(Switches(image_frame_order='tile_major'))
        model_f = tiny_model(Switches(image_frame_order='frame_major'))
        pixels = torch.randn(3, 3, 56, 56, generator=torch.Generator().manual_seed(SEED))
        pt, pf = image_plan([3], 4, 'tile_major'), image_plan([3], 4, 'frame_major')
        a = self.frames_out(model_t, pixels, pt)['vision.layer.2']
        b = self.frames_out(model_f, pixels, pf)['vision.layer.2']
        order = sorted(range(len(pf)), key=lambda i: (pf.seq[i], pf.pos[i]))  # frame-major -> tile-major
        self.assertEqual([pf.tiles[i] for i in order], pt.tiles)
        self.assertTrue(torch.allclose(a, b[order], rtol=1e-5, atol=1e-5))

    def test_cls_can_skip_temporal_attention(self):
        model = tiny_model(Switches(temporal_cls=False))
        pixels = torch.randn(1, 3, 56, 56, generator=torch.Generator().manual_seed(SEED))
        trace = self.frames_out(model, pixels, image_plan([1], 4, 'tile_major'))
        self.assertTrue(torch.equal(trace['vision.temporal_attn.1'][:, 0], torch.zeros(4, 32)))
        self.assertGreater(float(trace['vision.temporal_attn.1'][:, 1:].abs().max()), 0)


class PreprocessTest(unittest.TestCase):
    def test_candidate_grid_order_matches_spec(self):
        want12 = '(1,1),(1,2),(2,1),(3,1),(1,3),(2,2),(4,1),(1,4),(5,1),(1,5),(1,6),(6,1),(3,2),(2,3),(7,1),(1,7),(4,2),(2,4),(1,8),(8,1),(1,9),(3,3),(9,1),(2,5),(5,2),(10,1),(1,10),(11,1),(1,11),(12,1),(3,4),(4,3),(1,12),(6,2),(2,6)'
        want6 = '(1,1),(1,2),(2,1),(3,1),(1,3),(4,1),(1,4),(2,2),(1,5),(5,1),(6,1),(2,3),(1,6),(3,2)'
        fmt = lambda grids: ','.join(f'({a},{b})' for a, b in grids)  # noqa: E731
        self.assertEqual(fmt(preprocess.candidate_grids(1, 12)), want12)
        self.assertEqual(fmt(preprocess.candidate_grids(1, 6)), want6)

    def test_square_tie_break_grows_with_area(self):
        grids = preprocess.candidate_grids(1, 12)
        pick = lambda s: preprocess.closest_grid(1.0, grids, s, s, 448)  # noqa: E731
        # 2x2 needs area > 0.5*448^2*4 (side > 633.6), 3x3 area > 0.5*448^2*9 (side > 950.3)
        self.assertEqual([pick(633), pick(634), pick(950), pick(951)], [(1, 1), (2, 2), (2, 2), (3, 3)])

    def test_tiles_and_get_index(self):
        image = Image.fromarray(np.random.default_rng(SEED).integers(0, 256, (60, 130, 3), dtype=np.uint8))
        tiles = preprocess.dynamic_tiles(image, 1, 6, 56, True)
        self.assertEqual(len(tiles), 3)  # 2x1 grid + thumbnail
        self.assertTrue(all(t.size == (56, 56) for t in tiles))
        x = preprocess.to_tensor(tiles[0], 56)
        want = (np.asarray(tiles[0], np.float64) / 255 - np.array(preprocess.MEAN)) / np.array(preprocess.STD)
        self.assertLess(np.abs(x.permute(1, 2, 0).numpy() - want).max(), 1e-6)
        self.assertEqual(preprocess.get_index(895, 30.0, 8).tolist(), [55, 167, 279, 390, 502, 614, 725, 837])  # 670.5 rounds to even


class TextTest(unittest.TestCase):
    def test_template_and_special_tokens(self):
        from text import Tokenizer, chat_prompt, expand_images
        with tempfile.TemporaryDirectory() as d:
            shutil.copy(os.path.join(REPO, 'src', 'weights', 'tiny-tokenizer.model'), os.path.join(d, 'tokenizer.model'))
            tok = Tokenizer(d)
        prompt = chat_prompt(expand_images('<image>\nHi', [3]), 'Sys')
        self.assertEqual(prompt, '<|im_start|>system\nSys<|im_end|><|im_start|>user\n<img><IMG_CONTEXT><IMG_CONTEXT>'
                                 '<IMG_CONTEXT></img>\nHi<|im_end|><|im_start|>assistant\n')
        ids = tok.encode(prompt)
        sp = tok.sp.encode
        self.assertEqual(ids, [1, 92543] + sp('system\nSys') + [92542, 92543] + sp('user\n') + [92544] + [IMG_CONTEXT_ID] * 3
                         + [92545] + sp('\nHi') + [92542, 92543] + sp('assistant\n'))
        with self.assertRaisesRegex(ValueError, '1 <image> placeholders for 2 images'):
            expand_images('<image>', [1, 2])


def make_inputs(directory):
    """Small synthetic image and video files, so the test needs no shared assets."""
    rng = np.random.default_rng(SEED)
    yy, xx = np.mgrid[0:70, 0:150]
    img1 = np.stack([xx * 255 // 150, yy * 255 // 70, (xx + yy) % 256], -1).astype(np.uint8)
    Image.fromarray(img1).save(os.path.join(directory, 'a.jpg'))
    Image.fromarray(rng.integers(0, 256, (90, 60, 3), dtype=np.uint8)).save(os.path.join(directory, 'b.png'))
    video = os.path.join(directory, 'v.mp4')
    subprocess.run(['ffmpeg', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10', '-t', '3',
                    '-pix_fmt', 'yuv420p', video], check=True)
    return ['--image1', os.path.join(directory, 'a.jpg'), '--image2', os.path.join(directory, 'b.png'), '--video', video]


class DumpTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp()
        cls.model_dir = os.path.join(cls.dir, 'ckpt')
        write_checkpoint(cls.model_dir)
        cls.inputs = make_inputs(cls.dir)
        cls.common = ['--model', cls.model_dir, '--max-tiles', '2', '--frames', '8', '--max-new-tokens', '4',
                      '--system', 'You are a helpful assistant.'] + cls.inputs
        cls.out = os.path.join(cls.dir, 'a')
        subprocess.run([sys.executable, os.path.join(HERE, 'make_dumps.py'), '--out', cls.out] + cls.common,
                       check=True, capture_output=True)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.dir)

    def test_dumps_follow_the_format_and_regenerate_bit_identically(self):
        again = os.path.join(self.dir, 'b')
        with contextlib.redirect_stdout(io.StringIO()):
            make_dumps.main(['--out', again] + self.common)
        cfg = parse_config(CONFIG)
        for case in make_dumps.CASES:
            with open(os.path.join(self.out, f'{case}.safetensors'), 'rb') as f1, \
                    open(os.path.join(again, f'{case}.safetensors'), 'rb') as f2:
                self.assertEqual(f1.read(), f2.read(), case)
            t, meta = load_file(os.path.join(self.out, f'{case}.safetensors'))
            self.assertEqual(meta['case'], case)
            self.assertEqual(meta['model_type'], 'pvc_internvl')
            self.assertEqual(json.loads(meta['switches']), json.loads(Switches().to_json()))
            ids = t['input.ids']
            self.assertEqual(ids.dtype, torch.int64)
            self.assertEqual(ids[0], 1)
            n, d, vocab = ids.shape[0], 48, 92553
            self.assertEqual(tuple(t['llm.logits'].shape), (n, vocab))
            self.assertEqual(tuple(t['llm.inputs_embeds'].shape), (n, d))
            self.assertEqual([tuple(t[f'llm.layer.{i}'].shape) for i in range(2)], [(n, d)] * 2)
            self.assertEqual(t['generate.ids'].dtype, torch.int64)
            self.assertTrue(1 <= len(t['generate.ids']) <= 4)
            if case == 'text':
                self.assertFalse(any(k.startswith(('vision.', 'input.pixel')) for k in t))
                continue
            frames = t['vision.frames']
            nf, tiles = len(frames), t['input.pixel_values'].shape[0]
            self.assertEqual(tuple(t['input.pixel_values'].shape), (tiles, 3, 56, 56))
            self.assertEqual(nf, tiles * (1 if case == 'video' else 4))
            for name, shape in (('vision.embeddings', (nf, 17, 32)), ('vision.temporal_embedding', (nf, 32)),
                                ('vision.layer.0', (nf, 17, 32)), ('vision.temporal_attn.2', (nf, 17, 32)),
                                ('vision.pixel_shuffle', (nf, 4, 128)), ('vision.features', (nf * 4, 48))):
                self.assertEqual(tuple(t[name].shape), shape, f'{case} {name}')
            self.assertNotIn('vision.temporal_attn.0', t)
            self.assertEqual(int((ids == IMG_CONTEXT_ID).sum()), nf * cfg.tokens_per_frame)
            slots = ids == IMG_CONTEXT_ID
            self.assertTrue(torch.equal(t['llm.inputs_embeds'][slots], t['vision.features']))
            self.assertEqual(meta['prompt'].count('<img>'), 8 if case == 'video' else (1 if case == 'image' else 2))
            inputs = json.loads(meta['inputs'])
            if case == 'video':
                self.assertEqual(frames.tolist(), list(range(8)))
                self.assertEqual(inputs['frame_indices'], preprocess.get_index(30, 10.0, 8).tolist())
            else:
                self.assertEqual(sum(inputs['tiles_per_image']), tiles)

    def test_hook_dump_equals_reference_dump(self):
        """hf_dump's hooks on the reference model (same module names) reproduce make_dumps' tensors."""
        from pvc_reference import load_model
        model = load_model(self.model_dir)
        torch.set_num_threads(1)
        for case in make_dumps.CASES:
            ref, meta = load_file(os.path.join(self.out, f'{case}.safetensors'))
            pixels, ids = ref.get('input.pixel_values'), ref['input.ids']
            inputs = json.loads(meta['inputs'])
            plan = None
            if case == 'video':
                plan = video_plan(pixels.shape[0])
            elif pixels is not None:
                plan = image_plan(inputs['tiles_per_image'], 4, 'tile_major')
            got = hf_dump.hook_dump(model, lambda: model.generate(ids, pixels, plan, 4)[1], pixels, ids)
            self.assertEqual(set(got), set(ref), case)
            for name in ref:
                self.assertTrue(torch.equal(got[name], ref[name]), f'{case} {name}')


if __name__ == '__main__':
    unittest.main()
