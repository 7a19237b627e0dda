#!/usr/bin/env python3
"""Parity kit (a): run the OFFICIAL checkpoint through its own remote code and write the same dump format.

How a person with the weights runs it (needs transformers 4.37.x as named by the checkpoint, einops,
timm, and ~40 GB of RAM for float32 on CPU; a GPU works too with --device cuda):

    pip install transformers==4.37.2 einops timm sentencepiece
    # 1. the inputs: a dump from the PyTorch reference (any checkpoint with the same image size), e.g.
    /usr/bin/python3 test/reference/make_dumps.py --model weights/PVC-InternVL2-8B --out dumps/ref
    # 2. the official forward pass, with hooks at the same stage boundaries, on those inputs:
    python test/reference/hf_dump.py --model weights/PVC-InternVL2-8B --inputs dumps/ref/image.safetensors \
        --out dumps/hf/image.safetensors
    # 3. compare dumps/hf with the engine (and with dumps/ref) stage by stage.

Hooks (module names of the checkpoint): vision_model.embeddings -> vision.embeddings,
vision_model.temporal_embedder -> vision.temporal_embedding, vision_model.encoder.layers.{i} ->
vision.layer.{i}, ...layers.{i}.temporal_attn -> vision.temporal_attn.{i}, mlp1 input/output ->
vision.pixel_shuffle / vision.features, language_model.model.layers.0 input -> llm.inputs_embeds,
language_model.model.layers.{i} -> llm.layer.{i}, language_model.output -> llm.logits.
Vision stages concatenate every call along dim 0 (the remote code may run images one at a time);
LLM stages keep the first call (the prompt forward; later calls are decoding steps). vision.frames is
recovered by matching each hooked frame embedding to the embedding of each input tile.
Things to check by eye the first time: the PVC module names (temporal_embedder / temporal_attn are
this project's guesses: docs/pvc-conventions.md), the layout of the temporal_attn output (this dump
expects [frames, 1+P, C]), and whether the remote generate wants data_flag (passed when its signature
names it: 1 image, 2 multi-image, 3 video).
"""
import argparse
import inspect
import json
import os
import re
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from safetensors_io import load_file, save_file  # noqa: E402

DATA_FLAGS = {'image': 1, 'two_images': 2, 'video': 3}
STOP_IDS = [92542, 2]

_LAYER = re.compile(r'^(vision_model\.encoder|language_model\.model)\.layers\.(\d+)$')
_TEMPORAL = re.compile(r'^vision_model\.encoder\.layers\.(\d+)\.temporal_attn$')


def _first(out):
    return out[0] if isinstance(out, (tuple, list)) else out


def register_dump_hooks(model):
    """Forward hooks at the dump boundaries. Returns (records: stage -> list of tensors per call, handles)."""
    records = {}
    handles = []

    def keep(stage, value):
        records.setdefault(stage, []).append(_first(value).detach().float().cpu().clone())

    def post(stage):
        return lambda _m, _args, out: keep(stage, out)

    for name, module in model.named_modules():
        m = _LAYER.match(name)
        t = _TEMPORAL.match(name)
        if name == 'vision_model.embeddings':
            handles.append(module.register_forward_hook(post('vision.embeddings')))
        elif name == 'vision_model.temporal_embedder':
            handles.append(module.register_forward_hook(post('vision.temporal_embedding')))
        elif t:
            handles.append(module.register_forward_hook(post(f'vision.temporal_attn.{t.group(1)}')))
        elif m and m.group(1) == 'vision_model.encoder':
            handles.append(module.register_forward_hook(post(f'vision.layer.{m.group(2)}')))
        elif m:
            handles.append(module.register_forward_hook(post(f'llm.layer.{m.group(2)}')))
            if m.group(2) == '0':
                handles.append(module.register_forward_pre_hook(lambda _m, args: keep('llm.inputs_embeds', args[0])))
        elif name == 'mlp1':
            handles.append(module.register_forward_pre_hook(lambda _m, args: keep('vision.pixel_shuffle', args[0])))
            handles.append(module.register_forward_hook(post('vision.features')))
        elif name == 'language_model.output':
            handles.append(module.register_forward_hook(post('llm.logits')))
    return records, handles


_RANK = {'vision.embeddings': 0, 'vision.temporal_embedding': 1, 'vision.temporal_attn': 2, 'vision.layer': 2,
         'vision.pixel_shuffle': 3, 'vision.features': 4, 'llm.inputs_embeds': 5, 'llm.layer': 6, 'llm.logits': 7}


def _stage_key(stage):
    """Forward order: layer i's temporal_attn just before layer i's output."""
    m = re.match(r'(.*)\.(\d+)$', stage)
    head, layer = (m.group(1), int(m.group(2))) if m else (stage, -1)
    return _RANK[head], layer, head != 'vision.temporal_attn'


def collect(records):
    """Records -> dump tensors: vision stages concatenated over calls, llm stages from the first call."""
    out = {}
    for stage in sorted(records, key=_stage_key):
        calls = records[stage]
        if stage.startswith('llm.'):
            x = calls[0]
            out[stage] = x[0] if x.dim() == 3 and x.shape[0] == 1 else x
        else:
            x = torch.cat(calls, dim=0)
            out[stage] = x.reshape(-1, x.shape[-1]) if stage == 'vision.features' else x
    return out


def match_frames(embed_tiles, frame_embeddings):
    """For each hooked frame embedding [F, 1+P, C], the index of the tile whose embedding is nearest."""
    dist = torch.cdist(frame_embeddings.flatten(1)[None].double(), embed_tiles.flatten(1)[None].double())[0]
    return dist.argmin(dim=1).to(torch.int64)


def hook_dump(model, run, pixel_values, ids):
    """Runs `run()` (prompt forward + greedy generation; returns the new ids) with hooks on `model`;
    returns the dump tensors in DESIGN.md format."""
    records, handles = register_dump_hooks(model)
    try:
        with torch.no_grad():
            new_ids = run()
    finally:
        for h in handles:
            h.remove()
    stages = collect(records)
    tensors = {}
    if pixel_values is not None:
        tensors['input.pixel_values'] = pixel_values
    tensors['input.ids'] = ids
    if 'vision.embeddings' in stages:
        with torch.no_grad():
            param = next(model.parameters())
            tiles = model.vision_model.embeddings(pixel_values.to(param.device, param.dtype)).float().cpu()
        tensors['vision.frames'] = match_frames(tiles, stages['vision.embeddings'])
    tensors.update(stages)
    tensors['generate.ids'] = torch.as_tensor(new_ids, dtype=torch.int64).reshape(-1)
    return tensors


def run_official(model, pixel_values, ids, case, max_new_tokens, device):
    """One greedy generate through the remote code (the prompt forward is its first LLM call)."""
    kwargs = dict(input_ids=ids[None].to(device), attention_mask=torch.ones(1, ids.shape[0], dtype=torch.long, device=device),
                  max_new_tokens=max_new_tokens, do_sample=False, num_beams=1, eos_token_id=STOP_IDS)
    if pixel_values is not None:
        kwargs['pixel_values'] = pixel_values.to(device)
    params = inspect.signature(model.generate).parameters
    if 'data_flag' in params and case in DATA_FLAGS:
        kwargs['data_flag'] = torch.tensor([DATA_FLAGS[case]], device=device)
    out = model.generate(**kwargs)
    return out[0].cpu()


def main(argv=None):
    p = argparse.ArgumentParser(description='official-checkpoint dump through forward hooks')
    p.add_argument('--model', required=True, help='official checkpoint directory (with its remote code)')
    p.add_argument('--inputs', required=True, help='a dump whose input.pixel_values / input.ids are used')
    p.add_argument('--out', required=True, help='output .safetensors')
    p.add_argument('--max-new-tokens', type=int, default=8)
    p.add_argument('--device', default='cpu')
    args = p.parse_args(argv)

    from transformers import AutoModel  # only the official path needs it

    if args.device == 'cpu':  # CUDA would also need CUBLAS_WORKSPACE_CONFIG for this
        torch.use_deterministic_algorithms(True)
    src, meta = load_file(args.inputs)
    pixel_values, ids = src.get('input.pixel_values'), src['input.ids']
    model = AutoModel.from_pretrained(args.model, trust_remote_code=True, torch_dtype=torch.float32).eval().to(args.device)
    tensors = hook_dump(model, lambda: run_official(model, pixel_values, ids, meta.get('case'), args.max_new_tokens, args.device),
                        pixel_values, ids)
    with open(os.path.join(args.model, 'config.json')) as f:
        model_type = json.load(f).get('model_type', '')
    save_file(tensors, args.out, {'case': meta.get('case', ''), 'prompt': meta.get('prompt', ''), 'model_type': model_type,
                                  'switches': '{}', 'inputs': meta.get('inputs', '{}'), 'source': 'hf_remote_code'})
    print(f'{args.out}: generated {tensors["generate.ids"].tolist()}')


if __name__ == '__main__':
    main()
