// The quantized rows of a load's tensors, produced ahead of their use: blocks of QUANT_CHUNK
// checkpoint bytes, in load order, at most `window` of them read or being quantized at a time
// (the loader's bounded memory: window + 1 pairs of block buffers, reused), taken back in order, so
// the bytes and their order are the same whichever thread quantized them and however many.
// Reading ahead runs across tensors, so the workers stay busy while the loader stages one tensor,
// uploads the norms between two, or starts the next.

import { quantRowBytes, type QuantDType } from './quantize.js';
import { openQuantizer, type Quantizer } from './quantize-pool.js';
import { readExact, type TensorInfo } from './safetensors.js';

/** checkpoint bytes per block (at least one row): small enough that a pool of workers holds little, large enough that a message costs nothing */
export const QUANT_CHUNK = 4 << 20;

interface Block {
  name: string;
  firstRow: number;
  rows: number;
  /** resolves with the codes (in one of the pair's buffers) once read and quantized */
  job: Promise<Uint8Array>;
  pair: Pair;
}

/** A block's two buffers: the checkpoint's rows and their codes (each quantizing thread gets both, transferred). */
interface Pair {
  bits: ArrayBuffer;
  out: ArrayBuffer;
}

interface Plan {
  info: TensorInfo;
  dtype: QuantDType;
  K: number;
  rowBytes: number;
  rowsPerBlock: number;
}

export class QuantizeFeed {
  /** next block to start: plan index and row */
  private plan = 0;
  private row = 0;
  private readonly started: Block[] = [];
  private readonly free: Pair[] = [];
  /** the block being taken from, and how many of its rows are taken */
  private current: { block: Block; codes: Uint8Array; taken: number } | null = null;
  private closed = false;

  private constructor(
    private readonly quantizer: Quantizer,
    private readonly plans: Plan[],
    private readonly window: number,
  ) {
    this.pump();
  }

  /** The feed of `tensors` (2-D bf16 weights, in the order the loader takes them), quantized by `workers` threads (quantize-pool.ts), `workers` + 1 blocks ahead. */
  static async open(tensors: ReadonlyArray<{ info: TensorInfo; dtype: QuantDType }>, workers: number): Promise<QuantizeFeed> {
    const plans = tensors.map(({ info, dtype }) => {
      const K = info.shape[1];
      return { info, dtype, K, rowBytes: quantRowBytes(dtype, K), rowsPerBlock: Math.max(1, Math.floor(QUANT_CHUNK / (2 * K))) };
    });
    const quantizer = await openQuantizer(workers);
    return new QuantizeFeed(quantizer, plans, quantizer.workers + 1);
  }

  get workers(): number {
    return this.quantizer.workers;
  }

  /**
   * The codes of up to `maxRows` rows of `name` from row `row` on (rows are taken in order, each
   * once), and `block`: the whole block when these rows start one (for the quantized cache, which
   * is written block by block), else null. Valid until the next call.
   */
  async take(name: string, row: number, maxRows: number): Promise<{ codes: Uint8Array; rows: number; block: Uint8Array | null }> {
    let block: Uint8Array | null = null;
    if (!this.current || this.current.taken === this.current.block.rows) {
      if (this.current) this.free.push(this.current.block.pair);
      this.current = null;
      const next = this.started.shift();
      this.pump();
      if (!next) throw new Error(`tensor '${name}': no more quantized rows were planned`);
      this.current = { block: next, codes: await next.job, taken: 0 };
      block = this.current.codes;
    }
    const { block: b, codes, taken } = this.current;
    if (b.name !== name || b.firstRow + taken !== row) throw new Error(`tensor '${name}': rows asked from ${row}, the quantized rows at hand are '${b.name}' from ${b.firstRow + taken}`);
    const rows = Math.min(maxRows, b.rows - taken);
    const rowBytes = codes.length / b.rows;
    this.current.taken += rows;
    return { codes: codes.subarray(taken * rowBytes, (taken + rows) * rowBytes), rows, block };
  }

  /** Start reading and quantizing blocks until `window` are under way. */
  private pump(): void {
    while (!this.closed && this.started.length < this.window && this.plan < this.plans.length) {
      const p = this.plans[this.plan];
      const N = p.info.shape[0];
      const firstRow = this.row;
      const rows = Math.min(p.rowsPerBlock, N - firstRow);
      this.row += rows;
      if (this.row === N) {
        this.plan++;
        this.row = 0;
      }
      const pair = this.pairFor(rows * 2 * p.K, rows * p.rowBytes);
      const job = this.run(p, firstRow, rows, pair);
      job.catch(() => undefined); // taken in order by take(), or dropped by close()
      this.started.push({ name: p.info.name, firstRow, rows, job, pair });
    }
  }

  private async run(p: Plan, firstRow: number, rows: number, pair: Pair): Promise<Uint8Array> {
    const bits = new Uint16Array(pair.bits, 0, rows * p.K);
    await readExact(p.info.source, new Uint8Array(pair.bits, 0, bits.byteLength), p.info.offset + firstRow * 2 * p.K, `tensor '${p.info.name}'`);
    if (this.closed) throw new Error('the load ended');
    try {
      const done = await this.quantizer.run({ dtype: p.dtype, K: p.K, firstRow, bits, out: new Uint8Array(pair.out, 0, rows * p.rowBytes) });
      // the buffers came back (transferred): the pair holds them again for reuse
      pair.bits = done.bits.buffer as ArrayBuffer;
      pair.out = done.out.buffer as ArrayBuffer;
      return done.out;
    } catch (e) {
      throw new Error(`tensor '${p.info.name}': ${(e as Error).message}`, { cause: e });
    }
  }

  /** A free pair of buffers of at least these sizes (a reused one when it is large enough; blocks are rarely larger than QUANT_CHUNK). */
  private pairFor(bitsBytes: number, outBytes: number): Pair {
    const i = this.free.findIndex((p) => p.bits.byteLength >= bitsBytes && p.out.byteLength >= outBytes);
    if (i >= 0) return this.free.splice(i, 1)[0];
    this.free.pop(); // too small: dropped, so the pairs stay at window + 1
    return { bits: new ArrayBuffer(Math.max(bitsBytes, QUANT_CHUNK)), out: new ArrayBuffer(Math.max(outBytes, QUANT_CHUNK)) };
  }

  /** Stop: nothing more is started, blocks under way are dropped, and the quantizer's threads end. */
  async close(): Promise<void> {
    this.closed = true;
    this.started.length = 0;
    this.current = null;
    this.free.length = 0;
    await this.quantizer.close();
  }
}
