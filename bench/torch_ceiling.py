"""CPU ceiling for the kernel benchmark, run with Debian's /usr/bin/python3 (python3-torch, oneDNN).

Reads a JSON list of jobs on stdin and prints one JSON line per job with the median milliseconds:
  {"kind": "linear", "m": M, "k": K, "n": N}  -> bf16 F.linear (AVX512-BF16 GEMM/GEMV where the CPU has it)
  {"kind": "attn", "heads": H, "kv_heads": G, "lq": Lq, "lk": Lk, "d": D, "causal": bool}
                                               -> bf16 softmax(q k^T / sqrt(d) + mask) v with torch.matmul
"""
import json
import os
import sys
import time

import torch
import torch.nn.functional as F


def median_ms(fn, reps):
    fn()
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    times.sort()
    return times[len(times) // 2]


def linear_job(job):
    x = torch.randn(job["m"], job["k"]).to(torch.bfloat16)
    w = torch.randn(job["n"], job["k"]).to(torch.bfloat16)
    flops = 2 * job["m"] * job["k"] * job["n"]
    return median_ms(lambda: F.linear(x, w), max(3, min(20, int(2e10 / flops))))


def attn_job(job):
    h, g, lq, lk, d = job["heads"], job["kv_heads"], job["lq"], job["lk"], job["d"]
    q = torch.randn(h, lq, d).to(torch.bfloat16)
    k = torch.randn(g, lk, d).to(torch.bfloat16)
    v = torch.randn(g, lk, d).to(torch.bfloat16)
    mask = None
    if job["causal"]:
        pos_q = torch.arange(lq)[:, None] + (lk - lq)
        mask = torch.zeros(lq, lk).masked_fill(torch.arange(lk)[None, :] > pos_q, float("-inf")).to(torch.bfloat16)

    def run():
        kk = k.repeat_interleave(h // g, 0)
        vv = v.repeat_interleave(h // g, 0)
        s = torch.matmul(q, kk.transpose(1, 2)) * (d ** -0.5)
        if mask is not None:
            s = s + mask
        return torch.matmul(torch.softmax(s.float(), -1).to(torch.bfloat16), vv)

    return median_ms(run, 5)


def main():
    torch.manual_seed(0)
    torch.set_num_threads(os.cpu_count() or 1)
    with torch.no_grad():
        for job in json.load(sys.stdin):
            ms = linear_job(job) if job["kind"] == "linear" else attn_job(job)
            print(json.dumps({**job, "ms": ms}), flush=True)


if __name__ == "__main__":
    main()
