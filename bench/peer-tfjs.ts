// The WebGPU peer: TensorFlow.js's WebGPU backend on the same Dawn adapter, same process.
// tfjs has no bf16 weights, so the peer runs f32 (its best WebGPU path); attention is the usual
// matMul -> softmax -> matMul composition (tfjs has no fused attention).

import { create, globals } from 'webgpu';

type Tf = typeof import('@tensorflow/tfjs-core');

export interface Peer {
  name: string;
  matmulMs(m: number, k: number, n: number): Promise<number>;
  attentionMs(heads: number, kvHeads: number, lq: number, lk: number, d: number, causal: boolean): Promise<number>;
}

/** Median wall time of `run` (its result fully computed, read back 4 bytes), after warm-up. */
async function timeTf(tf: Tf, run: () => import('@tensorflow/tfjs-core').Tensor, reps: number): Promise<number> {
  const once = async () => {
    const t0 = performance.now();
    const out = run();
    // reading one element forces completion without timing a big readback
    const one = tf.slice(tf.reshape(out, [-1]), 0, 1);
    await one.data();
    one.dispose();
    out.dispose();
    return performance.now() - t0;
  };
  await once();
  const times: number[] = [];
  for (let i = 0; i < reps; i++) times.push(await once());
  times.sort((a, b) => a - b);
  return times[times.length >> 1];
}

/** tfjs binds each tensor whole (past the binding limit it records an error and returns garbage), so
 * the peer splits big weights by rows and attention by heads, as a tfjs user would have to. */
const TFJS_MAX_ELEMENTS = (128 * 2 ** 20) / 4;

export async function createTfjsPeer(reps = 5): Promise<Peer> {
  Object.assign(globalThis, globals);
  const navGpu = create([]);
  Object.defineProperty(globalThis, 'navigator', { value: { gpu: navGpu, userAgent: 'node' }, configurable: true });
  const tf = await import('@tensorflow/tfjs-core');
  await import('@tensorflow/tfjs-backend-webgpu');
  if (!(await tf.setBackend('webgpu'))) throw new Error('tfjs WebGPU backend did not initialise');
  await tf.ready();
  return {
    name: 'tfjs-webgpu 4.x (f32)',
    async matmulMs(m, k, n) {
      const rowsPerPart = Math.floor(TFJS_MAX_ELEMENTS / Math.max(k, m));
      const x = tf.randomNormal([m, k]);
      const parts = Array.from({ length: Math.ceil(n / rowsPerPart) }, (_, i) => tf.randomNormal([Math.min(rowsPerPart, n - i * rowsPerPart), k]));
      const ms = await timeTf(tf, () => (parts.length === 1 ? tf.matMul(x, parts[0], false, true) : tf.tidy(() => tf.concat(parts.map((w) => tf.matMul(x, w, false, true)), 1))), reps);
      x.dispose();
      for (const w of parts) w.dispose();
      return ms;
    },
    async attentionMs(heads, kvHeads, lq, lk, d, causal) {
      const q = tf.randomNormal([heads, lq, d]);
      const k = tf.randomNormal([kvHeads, lk, d]);
      const v = tf.randomNormal([kvHeads, lk, d]);
      const rep = heads / kvHeads;
      let mask: import('@tensorflow/tfjs-core').Tensor | null = null;
      if (causal) {
        const qi = tf.add(tf.reshape(tf.range(0, lq), [lq, 1]), lk - lq);
        mask = tf.mul(tf.cast(tf.greater(tf.reshape(tf.range(0, lk), [1, lk]), qi), 'float32'), -1e30);
      }
      // heads per chunk so the [heads, lq, lk] score matrix fits one binding
      const chunk = Math.max(rep, Math.floor(TFJS_MAX_ELEMENTS / (lq * lk) / rep) * rep);
      const ms = await timeTf(
        tf,
        () =>
          tf.tidy(() => {
            const kk = rep > 1 ? tf.reshape(tf.tile(tf.expandDims(k, 1), [1, rep, 1, 1]), [heads, lk, d]) : k;
            const vv = rep > 1 ? tf.reshape(tf.tile(tf.expandDims(v, 1), [1, rep, 1, 1]), [heads, lk, d]) : v;
            const outs = [];
            for (let h = 0; h < heads; h += chunk) {
              const n = Math.min(chunk, heads - h);
              let s = tf.mul(tf.matMul(tf.slice(q, [h, 0, 0], [n, lq, d]), tf.slice(kk, [h, 0, 0], [n, lk, d]), false, true), 1 / Math.sqrt(d));
              if (mask) s = tf.add(s, mask);
              outs.push(tf.matMul(tf.softmax(s), tf.slice(vv, [h, 0, 0], [n, lk, d])));
            }
            return outs.length === 1 ? outs[0] : tf.concat(outs, 0);
          }),
        reps,
      );
      q.dispose();
      k.dispose();
      v.dispose();
      mask?.dispose();
      return ms;
    },
  };
}
