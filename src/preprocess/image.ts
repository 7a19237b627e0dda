// InternVL's load_image: dynamic tiling (dynamic_preprocess), then ToTensor + ImageNet
// normalisation into [n, 3, S, S] float32 (CHW per tile). See shared/docs/pvc-architecture.md 9.1.

import { decodeImage } from './decode.js';
import { checkImage, crop, resizeBicubic, type RgbImage } from './resize.js';

export const IMAGENET_MEAN = [0.485, 0.456, 0.406] as const;
export const IMAGENET_STD = [0.229, 0.224, 0.225] as const;

export interface TileOptions {
  /** Tile side S (448 for the real model). */
  imageSize?: number;
  /** max_num: most tiles before the thumbnail (12 in the README, 6 in evals). */
  maxTiles?: number;
  /** min_num (1 in the reference). */
  minTiles?: number;
  /** Append the whole image resized to S x S when there is more than one tile. */
  useThumbnail?: boolean;
}

export interface PixelValues {
  /** [n, 3, S, S] row-major. */
  data: Float32Array;
  shape: [number, number, number, number];
}

export interface Tiling {
  /** Chosen grid (columns, rows). */
  grid: [number, number];
  /** Row-major tiles, then the thumbnail when one is added. */
  tiles: RgbImage[];
}

// ---- candidate grids in CPython's order ----------------------------------------------------
// The reference builds a Python set of (i, j) and sorts it by i*j; sorted() is stable, so grids of
// equal area keep the set's iteration order. That order comes from CPython's tuple hash (xxHash
// based, 3.8+) and its set table (linear probing then perturbation), emulated here exactly.

const M64 = (1n << 64n) - 1n;
const XXPRIME_1 = 11400714785074694791n;
const XXPRIME_2 = 14029467366897019727n;
const XXPRIME_5 = 2870177450012600261n;

/** hash((a, b)) for small non-negative ints (whose hash is the int itself), as an unsigned 64-bit value. */
function tupleHash(a: number, b: number): bigint {
  let acc = XXPRIME_5;
  for (const lane of [BigInt(a), BigInt(b)]) {
    acc = (acc + lane * XXPRIME_2) & M64;
    acc = ((acc << 31n) | (acc >> 33n)) & M64;
    acc = (acc * XXPRIME_1) & M64;
  }
  acc = (acc + (2n ^ (XXPRIME_5 ^ 3527539n))) & M64;
  return acc === M64 ? 1546275796n : acc;
}

const LINEAR_PROBES = 9;

/** A CPython set of int pairs, enough of setobject.c to reproduce its iteration order. */
class PySet {
  private mask = 7;
  private slots: ({ key: [number, number]; hash: bigint } | null)[] = new Array(8).fill(null);
  private used = 0;

  add(key: [number, number]): void {
    const hash = tupleHash(key[0], key[1]);
    let i = Number(hash & BigInt(this.mask));
    let perturb = hash;
    for (;;) {
      // Probe i, then up to LINEAR_PROBES neighbours when they fit in the table.
      const probes = i + LINEAR_PROBES <= this.mask ? LINEAR_PROBES : 0;
      for (let j = i; j <= i + probes; j++) {
        const e = this.slots[j];
        if (e === null) {
          this.slots[j] = { key, hash };
          this.used++;
          if (this.used * 5 >= this.mask * 3) this.resize(this.used > 50000 ? this.used * 2 : this.used * 4);
          return;
        }
        if (e.hash === hash && e.key[0] === key[0] && e.key[1] === key[1]) return;
      }
      perturb >>= 5n;
      i = Number((BigInt(i) * 5n + 1n + perturb) & BigInt(this.mask));
    }
  }

  private resize(minUsed: number): void {
    let size = 8;
    while (size <= minUsed) size *= 2;
    const old = this.slots;
    this.mask = size - 1;
    this.slots = new Array(size).fill(null);
    for (const e of old) if (e) this.insertClean(e);
  }

  private insertClean(e: { key: [number, number]; hash: bigint }): void {
    let i = Number(e.hash & BigInt(this.mask));
    let perturb = e.hash;
    for (;;) {
      const probes = i + LINEAR_PROBES <= this.mask ? LINEAR_PROBES : 0;
      for (let j = i; j <= i + probes; j++) {
        if (this.slots[j] === null) {
          this.slots[j] = e;
          return;
        }
      }
      perturb >>= 5n;
      i = Number((BigInt(i) * 5n + 1n + perturb) & BigInt(this.mask));
    }
  }

  keys(): [number, number][] {
    return this.slots.filter((e) => e !== null).map((e) => e!.key);
  }
}

/** Most tiles per image (max_num / --max-tiles). PVC-InternVL2 uses 12 (40 in some evaluations);
 *  each tile costs 256 tokens and 3 x S x S floats, so far fewer already overflow the context. */
export const MAX_TILES = 256;

/** Largest float32 pixel-value tensor one request may build (image tiles or video frames): 1 GiB. */
export const MAX_PIXEL_VALUE_BYTES = 2 ** 30;

/** Refuses `count` tiles of S x S before any is built when their pixel values pass the budget. */
export function checkPixelBudget(count: number, imageSize: number, what: string, maxBytes = MAX_PIXEL_VALUE_BYTES): void {
  const bytes = count * 3 * imageSize * imageSize * 4;
  if (bytes > maxBytes) {
    throw new Error(`${count} ${what} of ${imageSize}x${imageSize} need ${(bytes / 2 ** 20).toFixed(0)} MiB of pixel values; the limit is ${(maxBytes / 2 ** 20).toFixed(0)} MiB`);
  }
}

/** Candidate (columns, rows) grids in the exact order the reference iterates them. Its loop
 *  (for n in min..max, i in 1..n, j in 1..n) re-adds known pairs as no-ops, so only the first
 *  insertion of each pair matters: all pairs at n = min, then per n the pairs whose larger side is n,
 *  in loop order. That keeps the set's insertion order at O(max log max) work instead of O(max^3). */
export function targetRatios(minTiles: number, maxTiles: number): [number, number][] {
  if (!Number.isInteger(minTiles) || !Number.isInteger(maxTiles) || minTiles < 1 || maxTiles < minTiles) {
    throw new Error(`tile counts must be integers with 1 <= minTiles <= maxTiles, got ${minTiles}, ${maxTiles}`);
  }
  if (maxTiles > MAX_TILES) throw new Error(`max tiles ${maxTiles} is above the limit of ${MAX_TILES} tiles per image (PVC-InternVL2 uses 12)`);
  const set = new PySet();
  for (let i = 1; i <= minTiles; i++) {
    for (let j = 1; j <= minTiles; j++) if (i * j <= maxTiles && i * j >= minTiles) set.add([i, j]);
  }
  for (let n = minTiles + 1; n <= maxTiles; n++) {
    for (let i = 1; i < n && i * n <= maxTiles; i++) set.add([i, n]);
    for (let j = 1; j <= n && n * j <= maxTiles; j++) set.add([n, j]);
  }
  return set.keys().sort((a, b) => a[0] * a[1] - b[0] * b[1]); // Array.prototype.sort is stable
}

/** find_closest_aspect_ratio: nearest i/j to W/H; on an exact tie a later grid wins if the image
 *  area exceeds half the grid's pixel area. */
export function closestGrid(width: number, height: number, ratios: [number, number][], imageSize: number): [number, number] {
  const aspect = width / height;
  const area = width * height;
  let bestDiff = Infinity;
  let best: [number, number] = [1, 1];
  for (const r of ratios) {
    const diff = Math.abs(aspect - r[0] / r[1]);
    if (diff < bestDiff) {
      bestDiff = diff;
      best = r;
    } else if (diff === bestDiff && area > 0.5 * imageSize * imageSize * r[0] * r[1]) {
      best = r;
    }
  }
  return best;
}

function tileOptions(opts: TileOptions): Required<TileOptions> {
  const o = { imageSize: 448, maxTiles: 12, minTiles: 1, useThumbnail: true, ...opts };
  if (!Number.isInteger(o.imageSize) || o.imageSize < 1) throw new Error(`imageSize must be a positive integer, got ${o.imageSize}`);
  targetRatios(o.minTiles, o.maxTiles); // validates the counts
  checkPixelBudget(o.maxTiles + (o.useThumbnail && o.maxTiles > 1 ? 1 : 0), o.imageSize, 'tiles');
  return o;
}

/** dynamic_preprocess: resize to the chosen grid (PIL bicubic), cut row-major tiles, thumbnail last. */
export function dynamicPreprocess(img: RgbImage, opts: TileOptions = {}): Tiling {
  checkImage(img);
  const { imageSize: s, maxTiles, minTiles, useThumbnail } = tileOptions(opts);
  const grid = closestGrid(img.width, img.height, targetRatios(minTiles, maxTiles), s);
  const [cols, rows] = grid;
  const resized = resizeBicubic(img, s * cols, s * rows);
  const tiles: RgbImage[] = [];
  for (let b = 0; b < cols * rows; b++) tiles.push(crop(resized, (b % cols) * s, Math.floor(b / cols) * s, s, s));
  if (useThumbnail && tiles.length !== 1) tiles.push(resizeBicubic(img, s, s));
  return { grid, tiles };
}

/** ToTensor (/255) + Normalize(mean, std) in float32, as torchvision computes it, into [n, 3, S, S].
 *  Tiles must be S x S already (the reference's T.Resize is then a no-op). */
export function normalizeTiles(tiles: RgbImage[], imageSize: number): PixelValues {
  if (tiles.length === 0) throw new Error('normalizeTiles: no tiles');
  const plane = imageSize * imageSize;
  // Per channel, each of the 256 levels maps to one float32: ((v / 255) - mean) / std, each step rounded to f32.
  const lut = [0, 1, 2].map((c) => {
    const t = new Float32Array(256);
    const mean = Math.fround(IMAGENET_MEAN[c]);
    const std = Math.fround(IMAGENET_STD[c]);
    for (let v = 0; v < 256; v++) t[v] = Math.fround(Math.fround(Math.fround(v / 255) - mean) / std);
    return t;
  });
  const out = new Float32Array(tiles.length * 3 * plane);
  tiles.forEach((tile, n) => {
    checkImage(tile);
    if (tile.width !== imageSize || tile.height !== imageSize) {
      throw new Error(`normalizeTiles: tile ${n} is ${tile.width}x${tile.height}, expected ${imageSize}x${imageSize}`);
    }
    for (let c = 0; c < 3; c++) {
      const dst = out.subarray((n * 3 + c) * plane, (n * 3 + c + 1) * plane);
      const t = lut[c];
      for (let p = 0; p < plane; p++) dst[p] = t[tile.data[p * 3 + c]];
    }
  });
  return { data: out, shape: [tiles.length, 3, imageSize, imageSize] };
}

export interface LoadedImage extends PixelValues {
  grid: [number, number];
  /** Source size after decoding. */
  width: number;
  height: number;
}

/** load_image: decode, convert to RGB, tile, normalise. */
export async function loadImage(bytes: Uint8Array, opts: TileOptions = {}): Promise<LoadedImage> {
  const o = tileOptions(opts);
  const img = await decodeImage(bytes);
  const { grid, tiles } = dynamicPreprocess(img, o);
  return { ...normalizeTiles(tiles, o.imageSize), grid, width: img.width, height: img.height };
}
