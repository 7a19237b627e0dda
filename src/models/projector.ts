// Pixel shuffle + mlp1 (pvc-architecture.md section 5): ViT tokens -> LLM-width vision rows.

import type { Recorder } from '../gpu/recorder.js';
import { scope } from '../gpu/scope.js';
import type { Tensor } from '../gpu/tensor.js';
import type { ModelConfig } from '../weights/config.js';
import { matmul } from '../ops/matmul.js';
import { layerNorm } from '../ops/norm.js';
import { pixelShuffle } from '../ops/pixel_shuffle.js';
import type { Tap } from './internvit.js';
import type { WeightStore } from './weights.js';

const MLP1_LN_EPS = 1e-5; // nn.LayerNorm's default

export class Projector {
  private readonly norm: { weight: Tensor; bias: Tensor };
  private readonly fc1: { weight: Tensor; bias: Tensor };
  readonly fc2: { weight: Tensor; bias: Tensor };
  readonly inWidth: number;

  constructor(
    private readonly config: ModelConfig,
    w: WeightStore,
  ) {
    const k = 1 / config.downsampleRatio;
    const inWidth = (this.inWidth = config.vision.hiddenSize * k * k);
    const d = config.llm.hiddenSize;
    this.norm = { weight: w.take('mlp1.0.weight', [inWidth]), bias: w.take('mlp1.0.bias', [inWidth]) };
    this.fc1 = { weight: w.take('mlp1.1.weight', [d, inWidth]), bias: w.take('mlp1.1.bias', [d]) };
    this.fc2 = { weight: w.take('mlp1.3.weight', [d, d]), bias: w.take('mlp1.3.bias', [d]) };
  }

  /** vit: last ViT layer [F*(1+P), C]. Returns [F*T, D] vision rows, frame by frame. */
  forward(rec: Recorder, vit: Tensor, frames: number, tap?: Tap): Tensor {
    const c = this.config.vision.hiddenSize;
    const tokens = vit.numel / (frames * c);
    return scope(() => {
      const shuffled = pixelShuffle(rec, vit.reshape([frames, tokens, c]), { ratio: this.config.downsampleRatio, version: this.config.psVersion });
      tap?.('vision.pixel_shuffle', shuffled);
      const n = layerNorm(rec, shuffled.reshape([shuffled.numel / this.inWidth, this.inWidth]), this.norm.weight, this.norm.bias, MLP1_LN_EPS);
      const h = matmul(rec, n, this.fc1.weight, { bias: this.fc1.bias, epilogue: 'gelu' });
      return matmul(rec, h, this.fc2.weight, { bias: this.fc2.bias });
    });
  }
}
