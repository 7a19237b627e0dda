// InternLM2 decoder with a KV cache (pvc-architecture.md section 6).

import type { Gpu } from '../gpu/device.js';
import { advance, scope } from '../gpu/scope.js';
import type { Recorder } from '../gpu/recorder.js';
import type { Tensor } from '../gpu/tensor.js';
import type { LlmConfig } from '../weights/config.js';
import { llmAttention } from '../ops/attention.js';
import { siluMul } from '../ops/elementwise.js';
import { embedding } from '../ops/embedding.js';
import { appendKv } from '../ops/kv_cache.js';
import { matmul } from '../ops/matmul.js';
import { rmsNorm } from '../ops/norm.js';
import { qkvRopeView, rope } from '../ops/rope.js';
import type { Tap } from './internvit.js';
import type { WeightStore } from './weights.js';

interface DecoderLayer {
  attentionNorm: Tensor;
  wqkv: Tensor;
  wo: Tensor;
  ffnNorm: Tensor;
  w1: Tensor;
  w3: Tensor;
  w2: Tensor;
}

/** Per-layer K and V caches [capacity, kvHeads*headDim] and how many positions they hold. */
export class KvCache {
  length = 0;
  constructor(
    public k: Tensor[],
    public v: Tensor[],
  ) {}

  /** positions the caches have room for */
  get capacity(): number {
    return this.k[0]?.shape[0] ?? 0;
  }

  release(): void {
    for (const t of [...this.k, ...this.v]) t.release();
  }
}

export class InternLM2 {
  readonly layers: DecoderLayer[] = [];
  readonly embeddings: Tensor;
  readonly norm: Tensor;
  readonly output: Tensor;

  constructor(
    readonly config: LlmConfig,
    w: WeightStore,
  ) {
    const { hiddenSize: d, intermediateSize: ff, vocabSize: v, numAttentionHeads: h, numKeyValueHeads: g, headDim } = config;
    const m = 'language_model.model.';
    this.embeddings = w.take(`${m}tok_embeddings.weight`, [v, d]);
    for (let i = 0; i < config.numHiddenLayers; i++) {
      const l = `${m}layers.${i}.`;
      this.layers.push({
        attentionNorm: w.take(`${l}attention_norm.weight`, [d]),
        wqkv: w.take(`${l}attention.wqkv.weight`, [(h + 2 * g) * headDim, d]),
        wo: w.take(`${l}attention.wo.weight`, [d, h * headDim]),
        ffnNorm: w.take(`${l}ffn_norm.weight`, [d]),
        w1: w.take(`${l}feed_forward.w1.weight`, [ff, d]),
        w3: w.take(`${l}feed_forward.w3.weight`, [ff, d]),
        w2: w.take(`${l}feed_forward.w2.weight`, [d, ff]),
      });
    }
    this.norm = w.take(`${m}norm.weight`, [d]);
    this.output = w.take('language_model.output.weight', [v, d]);
  }

  newCache(gpu: Gpu, capacity: number): KvCache {
    return new KvCache(this.cacheTensors(gpu, capacity, 'k'), this.cacheTensors(gpu, capacity, 'v'));
  }

  /** Grow `cache` to hold `capacity` positions (a copy of what it holds; a no-op when it has room). */
  async reserve(gpu: Gpu, cache: KvCache, capacity: number): Promise<void> {
    if (capacity <= cache.capacity) return;
    const k = this.cacheTensors(gpu, capacity, 'k');
    const v = this.cacheTensors(gpu, capacity, 'v');
    const bytes = cache.length * cache.k[0].rowSize * 4;
    if (bytes > 0) {
      await gpu.step((rec) => {
        cache.k.forEach((t, i) => rec.copyBuffer(t.buffer, 0, k[i].buffer, 0, bytes));
        cache.v.forEach((t, i) => rec.copyBuffer(t.buffer, 0, v[i].buffer, 0, bytes));
      });
    }
    cache.release();
    cache.k = k;
    cache.v = v;
  }

  private cacheTensors(gpu: Gpu, capacity: number, kind: 'k' | 'v'): Tensor[] {
    const width = this.config.numKeyValueHeads * this.config.headDim;
    return this.layers.map((_, i) => gpu.empty([capacity, width], 'f32', `${kind} cache ${i}`));
  }

  embed(rec: Recorder, ids: Tensor): Tensor {
    return embedding(rec, ids, this.embeddings);
  }

  /**
   * Run x [N, D] (embeddings of the next N positions) through every layer, appending to `cache`.
   * Returns logits [N, V] when `allLogits`, else logits [1, V] of the last position.
   */
  forward(rec: Recorder, x: Tensor, cache: KvCache, opts: { allLogits?: boolean; tap?: Tap } = {}): Tensor {
    const cfg = this.config;
    const n = x.shape[0];
    const position = cache.length;
    if (position + n > cache.capacity) throw new Error(`InternLM2: ${position + n} positions exceed the KV cache of ${cache.capacity}`);
    const ropeView = qkvRopeView(cfg.numAttentionHeads, cfg.numKeyValueHeads, cfg.headDim);
    const ntk = cfg.ropeScaling ? { maxPositionEmbeddings: cfg.maxPositionEmbeddings, scalingFactor: cfg.ropeScaling.factor } : {};
    let h = x;
    this.layers.forEach((layer, i) => {
      // nested scopes end each intermediate's life where the reference drops it
      const afterAttn = scope(() => {
        const attn = scope(() => {
          const qkv = scope(() => matmul(rec, rmsNorm(rec, h, layer.attentionNorm, cfg.rmsNormEps), layer.wqkv));
          rope(rec, qkv, ropeView, { positionOffset: position, theta: cfg.ropeTheta, seqLen: position + n, ...ntk });
          appendKv(rec, qkv, cache.k[i], cache.v[i], { kvHeads: cfg.numKeyValueHeads, headDim: cfg.headDim, position });
          return llmAttention(rec, qkv, cache.k[i], cache.v[i], { heads: cfg.numAttentionHeads, kvHeads: cfg.numKeyValueHeads, kvLen: position + n });
        });
        return matmul(rec, attn, layer.wo, { residual: h });
      });
      if (h !== x) h.release(); // the previous layer's output (the caller owns x)
      h = advance(afterAttn, (afterAttn) => {
        const act = scope(() => {
          const [gate, up] = scope(() => {
            const f = rmsNorm(rec, afterAttn, layer.ffnNorm, cfg.rmsNormEps);
            return [matmul(rec, f, layer.w1), matmul(rec, f, layer.w3)];
          });
          return siluMul(rec, gate, up);
        });
        return matmul(rec, act, layer.w2, { residual: afterAttn });
      });
      opts.tap?.(`llm.layer.${i}`, h);
    });
    cache.length = position + n;
    return scope(() => {
      let last = h;
      if (!opts.allLogits && n > 1) {
        last = rec.gpu.empty([1, cfg.hiddenSize], 'f32', 'last hidden');
        const rowBytes = cfg.hiddenSize * 4;
        rec.copyBuffer(h.buffer, (n - 1) * rowBytes, last.buffer, 0, rowBytes);
      }
      const logits = matmul(rec, rmsNorm(rec, last, this.norm, cfg.rmsNormEps), this.output);
      if (h !== x) h.release();
      return logits;
    });
  }
}
