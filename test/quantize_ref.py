"""Independent float64 reference for src/weights/quantize.ts (numpy): reads bf16 bit patterns
(little-endian uint16, rows of K) and writes the quantized rows in the layout of docs/quantization.md,
and beside them (out.bin.f64) the dequantized values as float64.

    /usr/bin/python3 test/quantize_ref.py q4|q8 K in.u16 out.bin

bench/quant_accuracy.py imports quantize() for the accuracy measurements.
"""
import sys

import numpy as np


def quantize(fmt, x):
    """x: float64 [rows, K] (bf16 values) -> (row-layout bytes uint8 [rows, bytes], dequantized float64 [rows, K])."""
    rows, K = x.shape
    x = x.reshape(rows, K // 32, 32)
    if fmt == 'q4':
        first_max = np.argmax(np.abs(x), axis=2)[..., None]  # argmax returns the first of equal maxima
        d = np.take_along_axis(x, first_max, axis=2)[..., 0] / -8.0
        lo, hi = -8, 7
    else:
        d = np.abs(x).max(axis=2) / 127.0
        lo, hi = -127, 127
    d16 = d.astype(np.float16)  # one rounding, float64 -> half, to nearest even
    dd = d16.astype(np.float64)[..., None]
    safe = np.where(dd == 0, 1.0, dd)
    q = np.where(dd == 0, 0.0, np.clip(np.rint(x / safe), lo, hi)).astype(np.int64)  # rint: halves to even

    scale_bytes = -(-K // 256) * 16
    scales = np.zeros((rows, scale_bytes), dtype=np.uint8)
    scales[:, : 2 * (K // 32)] = d16.astype('<f2').view(np.uint8).reshape(rows, -1)
    if fmt == 'q4':
        c = (q & 15).reshape(rows, K // 32, 4, 8)  # 4-bit two's complement; [row, group, word j, element 8j + i]
        codes = (c[..., :4] | (c[..., 4:] << 4)).astype(np.uint8).reshape(rows, K // 2)
    else:
        codes = q.astype(np.int8).view(np.uint8).reshape(rows, K)
    return np.concatenate([codes, scales], axis=1), (q * dd).reshape(rows, K)


if __name__ == '__main__':
    fmt, K, src, dst = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    bits = np.fromfile(src, dtype='<u2')
    x = (bits.astype(np.uint32) << 16).view(np.float32).astype(np.float64).reshape(-1, K)
    data, values = quantize(fmt, x)
    data.tofile(dst)
    values.astype('<f8').tofile(dst + '.f64')
