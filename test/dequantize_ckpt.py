"""Writes a copy of a checkpoint whose q8 / q4 quantized tensors hold their dequantized values (F32),
for the PyTorch reference to run the quantized engine's model (test/quantize-parity.test.ts).

    /usr/bin/python3 test/dequantize_ckpt.py q4|q8 SRC_DIR DST_DIR

Which tensors: the LLM's 2-D BF16 weights whose rows are whole 32-value groups, the rule of
src/weights/quantize.ts quantizeRule, written again here independently.
"""
import os
import shutil
import sys

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, 'reference'))
from quantize_ref import quantize  # noqa: E402
from safetensors_io import checkpoint_files, load_file, save_file, to_f32  # noqa: E402

fmt, src, dst = sys.argv[1:4]
os.makedirs(dst, exist_ok=True)
for f in os.listdir(src):
    # config and tokenizer files; not the engine's quantized cache (.pvc-cache/, a folder)
    if not f.endswith('.safetensors') and os.path.isfile(os.path.join(src, f)):
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))
_, files = checkpoint_files(src)
for path in files:
    tensors, meta = load_file(path)
    for name, t in tensors.items():
        if name.startswith('language_model.') and t.dtype == torch.bfloat16 and t.dim() == 2 and t.shape[1] % 32 == 0:
            tensors[name] = torch.from_numpy(quantize(fmt, to_f32(t).double().numpy())[1]).float()
    save_file(tensors, os.path.join(dst, os.path.basename(path)), meta)
