"""Minimal safetensors reader/writer (no dependency beyond numpy and torch).

Format: 8-byte little-endian header length, a JSON header {name: {dtype, shape, data_offsets},
"__metadata__": {str: str}}, then the raw little-endian tensor bytes. BF16 is read by widening
the uint16 bits into the high half of a float32 (exact) and written with torch's round-to-nearest-even.
"""
import json
import os
import struct

import numpy as np
import torch

# dtype name -> (numpy storage dtype, torch dtype it is read as)
_NUMPY = {
    'F64': np.float64, 'F32': np.float32, 'F16': np.float16, 'BF16': np.uint16,
    'I64': np.int64, 'I32': np.int32, 'I16': np.int16, 'I8': np.int8, 'U8': np.uint8, 'BOOL': np.bool_,
}
_TORCH_NAME = {
    torch.float64: 'F64', torch.float32: 'F32', torch.float16: 'F16', torch.bfloat16: 'BF16',
    torch.int64: 'I64', torch.int32: 'I32', torch.int16: 'I16', torch.int8: 'I8', torch.uint8: 'U8', torch.bool: 'BOOL',
}


def read_header(path):
    """Returns (header dict without __metadata__, metadata dict, byte offset of the data section)."""
    with open(path, 'rb') as f:
        (n,) = struct.unpack('<Q', f.read(8))
        header = json.loads(f.read(n))
    meta = header.pop('__metadata__', None) or {}
    return header, meta, 8 + n


def bf16_bits_to_f32(bits):
    """uint16 numpy array of bf16 bits -> float32 torch tensor (exact: the bits become the high half)."""
    wide = torch.from_numpy(bits.astype(np.int32)) << 16
    return wide.view(torch.float32)


def to_f32(t):
    """Widens a stored tensor to float32 exactly (bf16 through its bits)."""
    if t.dtype == torch.bfloat16:
        return bf16_bits_to_f32(t.view(torch.int16).numpy().view(np.uint16))
    return t.to(torch.float32)


def f32_to_bf16_bits(t):
    """float tensor -> uint16 numpy array of bf16 bits, rounded to nearest even (torch's cast)."""
    return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)


def _tensor_from(raw, info):
    dtype = info['dtype']
    if dtype not in _NUMPY:
        raise ValueError(f'unsupported safetensors dtype {dtype}')
    arr = np.frombuffer(raw, dtype=_NUMPY[dtype]).reshape(info['shape']).copy()
    if dtype == 'BF16':
        return torch.from_numpy(arr.view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(arr)


def load_file(path, names=None):
    """Reads a safetensors file: (dict name -> tensor in the stored dtype, metadata dict)."""
    header, meta, start = read_header(path)
    data = np.memmap(path, dtype=np.uint8, mode='r', offset=start) if os.path.getsize(path) > start else b''
    out = {}
    for name, info in header.items():
        if names is not None and name not in names:
            continue
        b, e = info['data_offsets']
        out[name] = _tensor_from(bytes(data[b:e]), info)
    return out, meta


def save_file(tensors, path, metadata=None):
    """Writes tensors (insertion order kept) with string metadata; output bytes depend only on inputs."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(v, str):
                raise TypeError(f'metadata {k} must be a string')
        header['__metadata__'] = dict(metadata)
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in _TORCH_NAME:
            raise ValueError(f'{name}: unsupported dtype {t.dtype}')
        t = t.detach().contiguous().cpu()
        raw = f32_to_bf16_bits(t).tobytes() if t.dtype == torch.bfloat16 else t.numpy().tobytes()
        header[name] = {'dtype': _TORCH_NAME[t.dtype], 'shape': list(t.shape), 'data_offsets': [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(',', ':'), ensure_ascii=True).encode()
    text += b' ' * (-len(text) % 8)  # the data section starts 8-byte aligned, as the reference writer does
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)


def checkpoint_files(model_dir):
    """Shard paths of a checkpoint directory: through model.safetensors.index.json, else model.safetensors."""
    index = os.path.join(model_dir, 'model.safetensors.index.json')
    if os.path.exists(index):
        with open(index) as f:
            weight_map = json.load(f)['weight_map']
        return weight_map, sorted({os.path.join(model_dir, s) for s in weight_map.values()})
    single = os.path.join(model_dir, 'model.safetensors')
    if not os.path.exists(single):
        raise FileNotFoundError(f'{model_dir}: neither model.safetensors.index.json nor model.safetensors')
    return None, [single]


def checkpoint_shapes(model_dir):
    """name -> shape for every tensor of a (possibly sharded) checkpoint, from the headers only."""
    weight_map, files = checkpoint_files(model_dir)
    shapes = {}
    for path in files:
        header, _, _ = read_header(path)
        for name, info in header.items():
            shapes[name] = tuple(info['shape'])
    if weight_map is not None and set(weight_map) != set(shapes):
        diff = sorted(set(weight_map) ^ set(shapes))
        raise ValueError(f'index weight_map and shard headers disagree on {len(diff)} names, e.g. {diff[:5]}')
    return shapes


def load_checkpoint(model_dir):
    """Every tensor of a checkpoint directory (sharded or not) in its stored dtype."""
    _, files = checkpoint_files(model_dir)
    out = {}
    for path in files:
        tensors, _ = load_file(path)
        dup = set(out) & set(tensors)
        if dup:
            raise ValueError(f'{path}: tensors repeated across shards: {sorted(dup)[:5]}')
        out.update(tensors)
    return out
