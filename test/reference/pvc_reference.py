"""PyTorch reference of PVC-InternVL2 (InternViT + PVC temporal layers + pixel shuffle + mlp1 + InternLM2).

Spec: /work/shared/docs/pvc-architecture.md (model) and docs/pvc-conventions.md (the PVC names and
switches). Module and parameter names equal the checkpoint tensor names, so
`model.load_state_dict(tensors, strict=True)` takes a checkpoint as it is stored; which vision layers
are temporal (and their AdaLN chunk count k) is read from the tensor names and shapes present.
Everything computes in float32; bf16 weights are widened exactly.
"""
import json
import math
import os
import re
from dataclasses import asdict, dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from safetensors_io import checkpoint_shapes, load_checkpoint, to_f32

IMG_CONTEXT_ID = 92546
IM_END_ID = 92542
EOS_ID = 2
STOP_IDS = (IM_END_ID, EOS_ID)


# ---------------------------------------------------------------- configuration

@dataclass
class VisionConfig:
    hidden_size: int
    num_heads: int
    num_layers: int
    intermediate_size: int
    patch_size: int
    image_size: int
    eps: float
    qkv_bias: bool


@dataclass
class LLMConfig:
    hidden_size: int
    num_heads: int
    num_kv_heads: int
    num_layers: int
    intermediate_size: int
    vocab_size: int
    eps: float
    rope_theta: float
    rope_scaling: dict | None
    max_position_embeddings: int

    @property
    def head_dim(self):
        return self.hidden_size // self.num_heads


@dataclass
class PVCConfig:
    vision: VisionConfig
    llm: LLMConfig
    model_type: str
    image_size: int          # force_image_size, else the vision image_size
    downsample_ratio: float
    ps_version: str
    select_layer: int
    dynamic_image_size: bool
    use_thumbnail: bool
    min_dynamic_patch: int
    max_dynamic_patch: int
    image_repeat_time: int

    @property
    def tokens_per_frame(self):
        grid = self.image_size // self.vision.patch_size
        return round(grid * self.downsample_ratio) ** 2


def _require(cond, msg):
    if not cond:
        raise ValueError(msg)


def parse_config(cfg):
    """config.json (nested vision_config / llm_config) -> PVCConfig; unsupported options raise."""
    v, l = cfg['vision_config'], cfg['llm_config']
    _require(v.get('hidden_act', 'gelu') == 'gelu', f"vision hidden_act {v.get('hidden_act')} unsupported (gelu only)")
    _require(v.get('norm_type', 'layer_norm') == 'layer_norm', f"vision norm_type {v.get('norm_type')} unsupported")
    _require(not v.get('qk_normalization', False), 'vision qk_normalization is not supported (InternViT-300M has none)')
    _require(l.get('hidden_act', 'silu') == 'silu', f"llm hidden_act {l.get('hidden_act')} unsupported (silu only)")
    _require(not l.get('bias', False), 'llm bias=true is not supported (InternLM2 has no biases)')
    _require(not l.get('tie_word_embeddings', False), 'tied word embeddings are not supported (InternLM2 unties them)')
    _require(cfg.get('video_repeat_time', 1) == 1, 'video_repeat_time != 1: its semantics are unknown (pvc-architecture.md 4.2)')
    _require(not cfg.get('mlp_add_ops'), f"mlp_add_ops={cfg.get('mlp_add_ops')!r}: its semantics are unknown (pvc-architecture.md 4.5)")
    _require(cfg.get('ps_version', 'v1') in ('v1', 'v2'), f"ps_version {cfg.get('ps_version')} is not v1 or v2")
    vision = VisionConfig(
        hidden_size=v['hidden_size'], num_heads=v['num_attention_heads'], num_layers=v['num_hidden_layers'],
        intermediate_size=v['intermediate_size'], patch_size=v['patch_size'], image_size=v['image_size'],
        eps=v.get('layer_norm_eps', 1e-6), qkv_bias=v.get('qkv_bias', True))
    llm = LLMConfig(
        hidden_size=l['hidden_size'], num_heads=l['num_attention_heads'],
        num_kv_heads=l.get('num_key_value_heads', l['num_attention_heads']), num_layers=l['num_hidden_layers'],
        intermediate_size=l['intermediate_size'], vocab_size=l['vocab_size'], eps=l.get('rms_norm_eps', 1e-6),
        rope_theta=float(l.get('rope_theta', 10000.0)), rope_scaling=l.get('rope_scaling'),
        max_position_embeddings=l.get('max_position_embeddings', 2048))
    if llm.rope_scaling is not None:
        _require(llm.rope_scaling.get('type') in ('dynamic', 'linear'), f'rope_scaling {llm.rope_scaling} unsupported')
    return PVCConfig(
        vision=vision, llm=llm, model_type=cfg.get('model_type', ''),
        image_size=cfg.get('force_image_size') or v['image_size'],
        downsample_ratio=cfg.get('downsample_ratio', 0.5), ps_version=cfg.get('ps_version', 'v1'),
        select_layer=cfg.get('select_layer', -1), dynamic_image_size=cfg.get('dynamic_image_size', False),
        use_thumbnail=cfg.get('use_thumbnail', False), min_dynamic_patch=cfg.get('min_dynamic_patch', 1),
        max_dynamic_patch=cfg.get('max_dynamic_patch', 6), image_repeat_time=cfg.get('image_repeat_time', 1))


@dataclass
class Switches:
    """The PVC convention switches of docs/pvc-conventions.md, with their defaults."""
    adaln_chunk_order: str = 'shift_scale_gate'
    timestamp: str = 'index'
    sinusoid_order: str = 'cos_sin'
    temporal_mask: str = 'causal'
    temporal_cls: bool = True
    image_frame_order: str = 'tile_major'

    CHOICES = {
        'adaln_chunk_order': ('shift_scale_gate', 'scale_shift_gate'),
        'timestamp': ('index', 'relative', 'relative_minus_one'),
        'sinusoid_order': ('cos_sin', 'sin_cos'),
        'temporal_mask': ('causal', 'causal_exclusive', 'bidirectional'),
        'temporal_cls': (True, False),
        'image_frame_order': ('tile_major', 'frame_major'),
    }

    def __post_init__(self):
        for name, choices in self.CHOICES.items():
            _require(getattr(self, name) in choices, f'switch {name}={getattr(self, name)!r}; expected one of {choices}')

    @classmethod
    def parse(cls, items):
        """['name=value', ...] -> Switches (unknown names raise)."""
        kw = {}
        for item in items:
            name, _, value = item.partition('=')
            _require(name in cls.CHOICES, f'unknown switch {name!r}; known: {sorted(cls.CHOICES)}')
            kw[name] = {'true': True, 'false': False}.get(value, value) if name == 'temporal_cls' else value
        return cls(**kw)

    def to_json(self):
        return json.dumps(asdict(self), sort_keys=True)


# ---------------------------------------------------------------- frames and temporal sequences

@dataclass
class FramePlan:
    """The vision frames in LLM row order: the tile each frame reads, its temporal sequence and position."""
    tiles: list = field(default_factory=list)
    seq: list = field(default_factory=list)
    pos: list = field(default_factory=list)

    def add_sequence(self, tiles):
        sid = max(self.seq, default=-1) + 1
        for p, t in enumerate(tiles):
            self.tiles.append(t)
            self.seq.append(sid)
            self.pos.append(p)

    def __len__(self):
        return len(self.tiles)


def image_plan(tiles_per_image, repeat, order):
    """Each tile of each image becomes a static video of `repeat` frames (its own temporal sequence).
    order 'tile_major': t1f1 t1f2 .. t2f1 ..; 'frame_major': t1f1 t2f1 .. t1f2 .. (per image)."""
    plan = FramePlan()
    first = 0
    for n in tiles_per_image:
        tiles = range(first, first + n)
        if order == 'tile_major':
            for t in tiles:
                plan.add_sequence([t] * repeat)
        else:
            sid0 = max(plan.seq, default=-1) + 1
            for r in range(repeat):
                for k, t in enumerate(tiles):
                    plan.tiles.append(t)
                    plan.seq.append(sid0 + k)
                    plan.pos.append(r)
        first += n
    return plan


def video_plan(num_frames):
    """All frames of a video (one tile each) form one temporal sequence."""
    plan = FramePlan()
    plan.add_sequence(list(range(num_frames)))
    return plan


def timestamps(plan, mode):
    length = {}
    for s in plan.seq:
        length[s] = length.get(s, 0) + 1
    out = []
    for s, p in zip(plan.seq, plan.pos):
        n = length[s]
        if mode == 'index':
            out.append(float(p))
        elif mode == 'relative':
            out.append(p / n)
        else:
            out.append(p / (n - 1) if n > 1 else 0.0)
    return torch.tensor(out, dtype=torch.float32)


def temporal_allowed(plan, mode):
    """[F, F] bool: allowed[a, b] = frame a attends to frame b (same sequence and the mask rule)."""
    seq = torch.tensor(plan.seq)
    pos = torch.tensor(plan.pos)
    same = seq[:, None] == seq[None, :]
    if mode == 'bidirectional':
        return same
    if mode == 'causal':
        return same & (pos[None, :] <= pos[:, None])
    first_self = (pos[:, None] == 0) & torch.eye(len(plan), dtype=torch.bool)
    return same & ((pos[None, :] < pos[:, None]) | first_self)


def sinusoid(t, dim, order, max_period=10000.0):
    """DiT timestep embedding: [F] -> [F, dim], freqs exp(-ln(max_period) j / (dim/2))."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    parts = [torch.cos(args), torch.sin(args)]
    return torch.cat(parts if order == 'cos_sin' else parts[::-1], dim=-1)


# ---------------------------------------------------------------- vision tower

class InternVisionEmbeddings(nn.Module):
    def __init__(self, vc: VisionConfig):
        super().__init__()
        c = vc.hidden_size
        self.grid = vc.image_size // vc.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, c))
        self.patch_embedding = nn.Conv2d(3, c, kernel_size=vc.patch_size, stride=vc.patch_size)
        self.position_embedding = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, c))

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values)  # [F, C, gh, gw]
        gh, gw = patches.shape[-2:]
        if (gh, gw) != (self.grid, self.grid):
            raise ValueError(f'patch grid {gh}x{gw} differs from the position table grid {self.grid}x{self.grid}: '
                             'bicubic position interpolation is not implemented')
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat([cls, patches], dim=1) + self.position_embedding


class InternAttention(nn.Module):
    """Multi-head attention with a fused qkv (q, k, v blocks; head h = columns h*d..h*d+d-1 of each)."""

    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def attend(self, x, allowed=None):
        """x [B, L, C]; allowed [L, L] (query, key) or None for full attention."""
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        scores = (q * self.scale) @ k.transpose(-2, -1)
        if allowed is not None:
            scores = scores.masked_fill(~allowed, float('-inf'))
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj(out)

    def forward(self, x):
        return self.attend(x)


class TemporalAttention(InternAttention):
    """T-MHA: for each token position, attention over the frames (masked by `allowed`)."""

    def forward(self, x, allowed, include_cls):
        # x [F, N, C] -> per position [N, F, C]
        start = 0 if include_cls else 1
        out = self.attend(x[:, start:].transpose(0, 1), allowed).transpose(0, 1)
        if not include_cls:  # the CLS position passes through: its branch is zero
            out = torch.cat([torch.zeros_like(x[:, :1]), out], dim=1)
        return out


class InternMLP(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


def modulate(h, shift, scale):
    return h * (1 + scale) + shift


@dataclass
class VisionContext:
    cond: torch.Tensor | None       # [F, C] temporal-embedder output
    allowed: torch.Tensor | None    # [F, F] temporal mask
    switches: Switches
    trace: dict | None


class InternVisionEncoderLayer(nn.Module):
    def __init__(self, vc: VisionConfig, index, temporal_attn, adaln_chunks):
        super().__init__()
        c = vc.hidden_size
        self.index = index
        self.norm1 = nn.LayerNorm(c, eps=vc.eps)
        self.attn = InternAttention(c, vc.num_heads, vc.qkv_bias)
        self.ls1 = nn.Parameter(torch.ones(c))
        self.norm2 = nn.LayerNorm(c, eps=vc.eps)
        self.mlp = InternMLP(c, vc.intermediate_size)
        self.ls2 = nn.Parameter(torch.ones(c))
        self.has_temporal = temporal_attn
        self.adaln_chunks = adaln_chunks
        if temporal_attn:
            self.temporal_norm = nn.LayerNorm(c, eps=vc.eps)
            self.temporal_attn = TemporalAttention(c, vc.num_heads, True)
        if adaln_chunks:
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(c, adaln_chunks * c))

    def modulation(self, ctx):
        """(temporal, attn, mlp) groups of (shift, scale, gate), each [F, 1, C] or None."""
        if not self.adaln_chunks:
            return None, None, None
        parts = [p[:, None, :] for p in self.adaLN_modulation(ctx.cond).chunk(self.adaln_chunks, dim=-1)]
        groups = [parts[i:i + 3] for i in range(0, len(parts), 3)]
        if ctx.switches.adaln_chunk_order == 'scale_shift_gate':
            groups = [(g[1], g[0], g[2]) for g in groups]
        return tuple(groups) if len(groups) == 3 else (None, *groups)

    def forward(self, x, ctx: VisionContext):
        mod_t, mod_1, mod_2 = self.modulation(ctx)
        if self.has_temporal:
            h = self.temporal_norm(x)
            if mod_t:
                h = modulate(h, mod_t[0], mod_t[1])
            a = self.temporal_attn(h, ctx.allowed, ctx.switches.temporal_cls)
            if ctx.trace is not None:
                ctx.trace[f'vision.temporal_attn.{self.index}'] = a.detach().clone()
            x = x + (a * mod_t[2] if mod_t else a)
        h = self.norm1(x)
        if mod_1:
            h = modulate(h, mod_1[0], mod_1[1])
        a = self.attn(h)
        x = x + (a * mod_1[2] if mod_1 else a) * self.ls1
        h = self.norm2(x)
        if mod_2:
            h = modulate(h, mod_2[0], mod_2[1])
        m = self.mlp(h)
        return x + (m * mod_2[2] if mod_2 else m) * self.ls2


class InternVisionEncoder(nn.Module):
    def __init__(self, layers):
        super().__init__()
        self.layers = nn.ModuleList(layers)


class TemporalEmbedder(nn.Module):
    def __init__(self, freq_dim, dim):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t, order):
        return self.mlp(sinusoid(t, self.freq_dim, order))


class InternVisionTemporalModel(nn.Module):
    def __init__(self, vc: VisionConfig, layer_kinds, temporal_freq_dim):
        super().__init__()
        self.embeddings = InternVisionEmbeddings(vc)
        self.encoder = InternVisionEncoder(
            [InternVisionEncoderLayer(vc, i, *layer_kinds.get(i, (False, 0))) for i in range(vc.num_layers)])
        if temporal_freq_dim:
            self.temporal_embedder = TemporalEmbedder(temporal_freq_dim, vc.hidden_size)
        self.has_temporal_embedder = bool(temporal_freq_dim)

    def forward(self, pixel_values, plan: FramePlan, switches: Switches, trace=None):
        """pixel_values [F, 3, H, W] in plan order -> hidden states [embeddings, layer 0, ..., layer L-1]."""
        x = self.embeddings(pixel_values)
        if trace is not None:
            trace['vision.embeddings'] = x.detach().clone()
        cond = None
        if self.has_temporal_embedder:
            cond = self.temporal_embedder(timestamps(plan, switches.timestamp), switches.sinusoid_order)
            if trace is not None:
                trace['vision.temporal_embedding'] = cond.detach().clone()
        ctx = VisionContext(cond, temporal_allowed(plan, switches.temporal_mask), switches, trace)
        hidden = [x]
        for i, layer in enumerate(self.encoder.layers):
            x = layer(x, ctx)
            if trace is not None:
                trace[f'vision.layer.{i}'] = x.detach().clone()
            hidden.append(x)
        return hidden


def pixel_shuffle(x, scale_factor, ps_version):
    """InternVL's view/permute sequence. x [n, w, h, c] (dim 1 is the row) -> [n, w*s, h*s, c/s^2] (v2)."""
    n, w, h, c = x.size()
    x = x.view(n, w, int(h * scale_factor), int(c / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(c / (scale_factor * scale_factor)))
    if ps_version != 'v1':
        x = x.permute(0, 2, 1, 3).contiguous()
    return x


# ---------------------------------------------------------------- InternLM2

def rope_cos_sin(positions, head_dim, lc: LLMConfig, total_len):
    """cos, sin [n, head_dim] for rotate-half RoPE, computed in float32 as InternLM2 does. With dynamic NTK
    the base depends on the total sequence length (positions of one call share it; see make_dumps notes)."""
    base = lc.rope_theta
    t = positions.to(torch.float32)
    scaling = lc.rope_scaling or {}
    factor = scaling.get('factor', 1.0)
    if scaling.get('type') == 'dynamic' and total_len > lc.max_position_embeddings:
        base = base * ((factor * total_len / lc.max_position_embeddings) - (factor - 1)) ** (head_dim / (head_dim - 2))
    elif scaling.get('type') == 'linear':
        t = t / factor
    inv_freq = 1.0 / (base ** (torch.arange(0, head_dim, 2).float() / head_dim))
    freqs = torch.outer(t, inv_freq)
    emb = torch.cat([freqs, freqs], dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat([-x[..., half:], x[..., :half]], dim=-1)


def apply_rope(x, cos, sin):
    """x [heads, n, d]; cos/sin [n, d]."""
    return x * cos + rotate_half(x) * sin


class InternLM2RMSNorm(nn.Module):
    def __init__(self, dim, eps):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(dim))
        self.eps = eps

    def forward(self, x):
        variance = x.to(torch.float32).pow(2).mean(-1, keepdim=True)
        return self.weight * (x * torch.rsqrt(variance + self.eps))


class InternLM2Attention(nn.Module):
    def __init__(self, lc: LLMConfig):
        super().__init__()
        self.lc = lc
        self.groups = lc.num_heads // lc.num_kv_heads
        d = lc.head_dim
        self.wqkv = nn.Linear(lc.hidden_size, (lc.num_heads + 2 * lc.num_kv_heads) * d, bias=False)
        self.wo = nn.Linear(lc.num_heads * d, lc.hidden_size, bias=False)

    def split_qkv(self, x):
        """Fused wqkv, '(h gs d)' layout: per kv head g, rows [q_{g*G}..q_{g*G+G-1}, k_g, v_g].
        Returns q [heads, n, d], k and v [kv_heads, n, d]."""
        lc, n = self.lc, x.shape[0]
        qkv = self.wqkv(x).view(n, lc.num_kv_heads, self.groups + 2, lc.head_dim)
        q = qkv[:, :, :self.groups].reshape(n, lc.num_heads, lc.head_dim)
        return q.transpose(0, 1), qkv[:, :, -2].transpose(0, 1), qkv[:, :, -1].transpose(0, 1)

    def forward(self, x, start, cache):
        """x [n, D] at positions start..start+n-1; cache: dict with 'k', 'v' [kv_heads, L, d] (updated) or None."""
        lc, n = self.lc, x.shape[0]
        q, k, v = self.split_qkv(x)
        cos, sin = rope_cos_sin(torch.arange(start, start + n), lc.head_dim, lc, start + n)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:
            if 'k' in cache:
                k = torch.cat([cache['k'], k], dim=1)
                v = torch.cat([cache['v'], v], dim=1)
            cache['k'], cache['v'] = k, v
        k = k.repeat_interleave(self.groups, dim=0)  # query head j uses kv head j // groups
        v = v.repeat_interleave(self.groups, dim=0)
        scores = (q @ k.transpose(1, 2)) / math.sqrt(lc.head_dim)
        key_pos = torch.arange(k.shape[1])
        query_pos = torch.arange(start, start + n)
        scores = scores.masked_fill(key_pos[None, :] > query_pos[:, None], float('-inf'))
        probs = scores.softmax(dim=-1, dtype=torch.float32)
        out = (probs @ v).transpose(0, 1).reshape(n, lc.num_heads * lc.head_dim)
        return self.wo(out)


class InternLM2MLP(nn.Module):
    def __init__(self, lc: LLMConfig):
        super().__init__()
        self.w1 = nn.Linear(lc.hidden_size, lc.intermediate_size, bias=False)
        self.w3 = nn.Linear(lc.hidden_size, lc.intermediate_size, bias=False)
        self.w2 = nn.Linear(lc.intermediate_size, lc.hidden_size, bias=False)

    def forward(self, x):
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class InternLM2DecoderLayer(nn.Module):
    def __init__(self, lc: LLMConfig):
        super().__init__()
        self.attention_norm = InternLM2RMSNorm(lc.hidden_size, lc.eps)
        self.attention = InternLM2Attention(lc)
        self.ffn_norm = InternLM2RMSNorm(lc.hidden_size, lc.eps)
        self.feed_forward = InternLM2MLP(lc)

    def forward(self, x, start, cache):
        h = x + self.attention(self.attention_norm(x), start, cache)
        return h + self.feed_forward(self.ffn_norm(h))


class InternLM2Model(nn.Module):
    def __init__(self, lc: LLMConfig):
        super().__init__()
        self.tok_embeddings = nn.Embedding(lc.vocab_size, lc.hidden_size)
        self.layers = nn.ModuleList([InternLM2DecoderLayer(lc) for _ in range(lc.num_layers)])
        self.norm = InternLM2RMSNorm(lc.hidden_size, lc.eps)


class InternLM2ForCausalLM(nn.Module):
    def __init__(self, lc: LLMConfig):
        super().__init__()
        self.model = InternLM2Model(lc)
        self.output = nn.Linear(lc.hidden_size, lc.vocab_size, bias=False)

    def forward(self, embeds, start=0, cache=None, trace=None):
        """embeds [n, D] at positions start.. -> logits [n, V]. cache: list of per-layer dicts, or None."""
        x = embeds
        for i, layer in enumerate(self.model.layers):
            x = layer(x, start, None if cache is None else cache[i])
            if trace is not None:
                trace[f'llm.layer.{i}'] = x.detach().clone()
        return self.output(self.model.norm(x))


# ---------------------------------------------------------------- the whole model

def temporal_layout(shapes, vision_hidden):
    """From checkpoint names/shapes: ({layer: (has T-MHA, AdaLN chunks k or 0)}, temporal embedder freq dim or 0)."""
    kinds = {}
    pat = re.compile(r'vision_model\.encoder\.layers\.(\d+)\.(temporal_attn\.|adaLN_modulation\.1\.weight)')
    for name, shape in shapes.items():
        m = pat.match(name)
        if not m:
            continue
        i = int(m.group(1))
        tmha, k = kinds.get(i, (False, 0))
        if m.group(2) == 'temporal_attn.':
            tmha = True
        else:
            k, rem = divmod(shape[0], vision_hidden)
            _require(rem == 0 and k in (6, 9), f'{name}: shape {list(shape)} is not k*{vision_hidden} with k = 6 or 9')
        kinds[i] = (tmha, k)
    for i, (tmha, k) in kinds.items():
        _require(k != 9 or tmha, f'vision layer {i}: 9 AdaLN chunks but no temporal_attn')
    freq = shapes.get('vision_model.temporal_embedder.mlp.0.weight')
    freq_dim = freq[1] if freq else 0
    _require(freq_dim or not any(k for _, k in kinds.values()), 'AdaLN modulation present but no temporal_embedder')
    return kinds, freq_dim


class PVCInternVL(nn.Module):
    def __init__(self, cfg: PVCConfig, shapes, switches: Switches | None = None):
        """shapes: checkpoint name -> shape (decides the temporal layers and k)."""
        super().__init__()
        self.cfg = cfg
        self.switches = switches or Switches()
        vc = cfg.vision
        kinds, freq_dim = temporal_layout(shapes, vc.hidden_size)
        _require(all(i < vc.num_layers for i in kinds), f'temporal tensors for layers {sorted(kinds)} beyond {vc.num_layers}')
        self.vision_model = InternVisionTemporalModel(vc, kinds, freq_dim)
        k = round(1 / cfg.downsample_ratio)
        d_in = vc.hidden_size * k * k
        d = cfg.llm.hidden_size
        self.mlp1 = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d), nn.GELU(), nn.Linear(d, d))
        self.language_model = InternLM2ForCausalLM(cfg.llm)

    def extract_feature(self, pixel_values, plan: FramePlan, trace=None):
        """Tiles [n, 3, H, W] + plan -> vision rows [F * T, D] in LLM order."""
        frames = pixel_values[plan.tiles]
        if trace is not None:
            trace['vision.frames'] = torch.tensor(plan.tiles, dtype=torch.int64)
        hidden = self.vision_model(frames, plan, self.switches, trace)[self.cfg.select_layer]
        x = hidden[:, 1:]
        g = int(round(x.shape[1] ** 0.5))
        k = round(1 / self.cfg.downsample_ratio)
        _require(g * g == x.shape[1] and g % k == 0, f'patch grid of {x.shape[1]} tokens does not pixel-shuffle by {k}')
        x = pixel_shuffle(x.reshape(x.shape[0], g, g, -1), self.cfg.downsample_ratio, self.cfg.ps_version)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        if trace is not None:
            trace['vision.pixel_shuffle'] = x.detach().clone()
        out = self.mlp1(x).reshape(-1, self.cfg.llm.hidden_size)
        if trace is not None:
            trace['vision.features'] = out.detach().clone()
        return out

    def embed(self, ids, features=None):
        """ids [N] -> [N, D], <IMG_CONTEXT> rows replaced by the vision rows in order."""
        x = self.language_model.model.tok_embeddings(ids)
        slots = ids == IMG_CONTEXT_ID
        n_slots, n_rows = int(slots.sum()), 0 if features is None else features.shape[0]
        if n_slots != n_rows:
            raise ValueError(f'{n_slots} <IMG_CONTEXT> tokens in the prompt but {n_rows} vision rows')
        if n_rows:
            x = x.clone()
            x[slots] = features
        return x

    def generate(self, ids, pixel_values=None, plan=None, max_new_tokens=8, use_cache=True, trace=None):
        """Greedy decoding. Returns (prompt logits [N, V], new ids [G]); stops after emitting a stop id."""
        features = None if pixel_values is None else self.extract_feature(pixel_values, plan, trace)
        embeds = self.embed(ids, features)
        if trace is not None:
            trace['llm.inputs_embeds'] = embeds.detach().clone()
        lm = self.language_model
        cache = [{} for _ in lm.model.layers] if use_cache else None
        logits = lm(embeds, 0, cache, trace)
        prompt_logits = logits
        new = []
        while len(new) < max_new_tokens:
            nxt = int(logits[-1].argmax())
            new.append(nxt)
            if nxt in STOP_IDS or len(new) == max_new_tokens:
                break
            e = lm.model.tok_embeddings(torch.tensor([nxt]))
            if use_cache:
                logits = lm(e, embeds.shape[0] + len(new) - 1, cache)
            else:
                embeds = torch.cat([embeds, e])
                logits = lm(embeds)
        return prompt_logits, torch.tensor(new, dtype=torch.int64)


def load_model(model_dir, switches=None):
    """Builds the model from config.json and loads the checkpoint strictly (f32 compute)."""
    with open(os.path.join(model_dir, 'config.json')) as f:
        cfg = parse_config(json.load(f))
    shapes = checkpoint_shapes(model_dir)
    model = PVCInternVL(cfg, shapes, switches)
    tensors = {k: to_f32(v) for k, v in load_checkpoint(model_dir).items()}
    model.load_state_dict(tensors, strict=True)
    return model.eval()
