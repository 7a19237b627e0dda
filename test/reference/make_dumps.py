#!/usr/bin/python3
"""Writes one parity dump (safetensors, format of DESIGN.md "Dump format") per case.

    /usr/bin/python3 test/reference/make_dumps.py --model DIR --out DIR [--cases text,image,two_images,video]
        [--max-new-tokens 8] [--max-tiles 4] [--frames 8] [--switch name=value ...] [--system TEXT]
        [--logits-last K]

DIR is any checkpoint directory with the real file set: config.json, model.safetensors or
model.safetensors.index.json + shards, tokenizer.model (+ optional added_tokens.json /
tokenizer_config.json). Inputs: the example images and video of /work/shared/assets (override with
--image1/--image2/--video), preprocessed at the checkpoint's image size. Output: OUT/{case}.safetensors.
Runs single-threaded with deterministic algorithms, so the files regenerate bit-identically.

Dump notes beyond the DESIGN.md table:
- vision.temporal_attn.{i} [F, 1+P, C]: output of layer i's `temporal_attn` module (T-MHA after its
  proj), before the AdaLN gate and the residual add; zero at the CLS position when temporal_cls=false.
- vision.* tensors list the frames in LLM row order (vision.frames gives each frame's tile).
- generate.ids includes the stop token (92542 or 2) when one was emitted.
- With --logits-last K, llm.logits holds only the last K prompt rows ([K, V]; it dominates the file
  size otherwise) and the metadata key `logits_rows` gives their range "[N-K, N]"; without it, all N rows.
- Dynamic NTK RoPE: a forward of positions start..start+n-1 uses the base for length start+n (HF's
  behaviour for a freshly loaded model); plain RoPE below max_position_embeddings.
"""
import argparse
import json
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from preprocess import load_image, load_video  # noqa: E402
from pvc_reference import Switches, image_plan, load_model, video_plan  # noqa: E402
from safetensors_io import save_file  # noqa: E402
from text import SYSTEM_MESSAGE, Tokenizer, chat_prompt, expand_images  # noqa: E402

CASES = ('text', 'image', 'two_images', 'video')
ASSETS = os.environ.get('PVC_ASSETS', '/work/shared/assets')
QUESTIONS = {
    'text': 'Write a short poem about the sea.',
    'image': 'Please describe the image in detail.',
    'two_images': 'What are the similarities and differences between these two images?',
    'video': 'What is happening in this video?',
}


def deterministic():
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)


def case_inputs(case, cfg, args):
    """-> (question with <image> placeholders, pixel values or None, FramePlan or None, rows per image, input notes)."""
    question = QUESTIONS[case]
    if case == 'text':
        return question, None, None, [], {}
    repeat = cfg.image_repeat_time
    if case == 'video':
        pixels, indices = load_video(args.video, cfg.image_size, args.frames)
        prefix = ''.join(f'Frame{i + 1}: <image>\n' for i in range(len(indices)))
        notes = {'video': os.path.basename(args.video), 'frame_indices': indices.tolist()}
        return prefix + question, pixels, video_plan(len(indices)), [cfg.tokens_per_frame] * len(indices), notes
    paths = [args.image1] if case == 'image' else [args.image1, args.image2]
    max_num = min(cfg.max_dynamic_patch, args.max_tiles)
    images = [load_image(p, cfg.image_size, cfg.min_dynamic_patch, max_num, cfg.use_thumbnail, cfg.dynamic_image_size)
              for p in paths]
    tiles = [im.shape[0] for im in images]
    plan = image_plan(tiles, repeat, args.switches.image_frame_order)
    prefix = '<image>\n' if case == 'image' else ''.join(f'Image-{i + 1}: <image>\n' for i in range(len(paths)))
    rows = [n * repeat * cfg.tokens_per_frame for n in tiles]
    notes = {'images': [os.path.basename(p) for p in paths], 'tiles_per_image': tiles, 'max_tiles': max_num}
    return prefix + question, torch.cat(images), plan, rows, notes


def run_case(model, tokenizer, case, args):
    """-> (ordered dict of dump tensors, metadata dict)."""
    cfg = model.cfg
    question, pixels, plan, rows, notes = case_inputs(case, cfg, args)
    prompt = chat_prompt(expand_images(question, rows), args.system)
    ids = torch.tensor(tokenizer.encode(prompt), dtype=torch.int64)
    trace = {}
    with torch.no_grad():
        logits, new_ids = model.generate(ids, pixels, plan, args.max_new_tokens, trace=trace)
    tensors = {}
    if pixels is not None:
        tensors['input.pixel_values'] = pixels
    tensors['input.ids'] = ids
    tensors.update(trace)
    n = logits.shape[0]
    first = max(0, n - args.logits_last) if args.logits_last else 0
    tensors['llm.logits'] = logits[first:]
    tensors['generate.ids'] = new_ids
    meta = {'case': case, 'prompt': prompt, 'model_type': cfg.model_type, 'switches': model.switches.to_json(),
            'inputs': json.dumps(notes, sort_keys=True)}
    if args.logits_last:
        meta['logits_rows'] = json.dumps([first, n])
    return tensors, meta


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--model', required=True, help='checkpoint directory')
    p.add_argument('--out', required=True, help='output directory')
    p.add_argument('--cases', default=','.join(CASES))
    p.add_argument('--max-new-tokens', type=int, default=8)
    p.add_argument('--max-tiles', type=int, default=4, help='cap on dynamic tiles per image (thumbnail not counted)')
    p.add_argument('--frames', type=int, default=8, help='video frames sampled')
    p.add_argument('--switch', action='append', default=[], help='PVC convention switch, name=value')
    p.add_argument('--system', default=SYSTEM_MESSAGE, help='system message of the chat template')
    p.add_argument('--logits-last', type=int, default=0, help='keep only the last K rows of llm.logits (0: all)')
    p.add_argument('--image1', default=os.path.join(ASSETS, 'example_image1.jpg'))
    p.add_argument('--image2', default=os.path.join(ASSETS, 'example_image2.jpg'))
    p.add_argument('--video', default=os.path.join(ASSETS, 'example_video.mp4'))
    args = p.parse_args(argv)
    args.cases = [c for c in args.cases.split(',') if c]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f'unknown cases {sorted(unknown)}; known: {CASES}')
    if args.logits_last < 0:
        p.error('--logits-last must be >= 0')
    args.switches = Switches.parse(args.switch)
    return args


def main(argv=None):
    args = parse_args(argv)
    deterministic()
    model = load_model(args.model, args.switches)
    tokenizer = Tokenizer(args.model)
    os.makedirs(args.out, exist_ok=True)
    for case in args.cases:
        tensors, meta = run_case(model, tokenizer, case, args)
        path = os.path.join(args.out, f'{case}.safetensors')
        save_file(tensors, path, meta)
        n = tensors['input.ids'].shape[0]
        print(f'{path}: {n} prompt tokens, generated {tensors["generate.ids"].tolist()}, '
              f'{os.path.getsize(path) / 1e6:.1f} MB')


if __name__ == '__main__':
    main()
