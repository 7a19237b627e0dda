// Image headers without decoding: format sniffing and every declared dimension (JPEG SOF, PNG IHDR,
// WebP VP8X canvas / ANMF frames / VP8 and VP8L bitstreams, GIF screen and every frame descriptor,
// BMP info header as PIL reads it), checked against MAX_PIXELS before any decoder allocates.
// Works on a prefix of the file: when the prefix ends before the size is known it throws
// NeedMoreBytes, so a file probe reads only as far as the header goes.

/** Images above this many pixels are refused before decoding (PIL warns at 89 MP). */
export const MAX_PIXELS = 100_000_000;

export type ImageFormat = 'jpeg' | 'png' | 'webp' | 'gif' | 'bmp';

export interface ImageHeader {
  format: ImageFormat;
  /** Size of the decoded image (for GIF: the screen grown to fit the first frame, as PIL does). */
  width: number;
  height: number;
}

/** The prefix ended before the header did; `bytes` is how much of the file the parser wants. */
export class NeedMoreBytes extends Error {
  constructor(readonly bytes: number) {
    super(`image header needs ${bytes} bytes`);
  }
}

export function sniffFormat(b: Uint8Array): ImageFormat | null {
  const ascii = (off: number, s: string) => [...s].every((ch, i) => b[off + i] === ch.charCodeAt(0));
  if (b.length >= 3 && b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff) return 'jpeg';
  if (b.length >= 8 && b[0] === 0x89 && ascii(1, 'PNG\r\n\x1a\n')) return 'png';
  if (b.length >= 12 && ascii(0, 'RIFF') && ascii(8, 'WEBP')) return 'webp';
  if (b.length >= 6 && (ascii(0, 'GIF87a') || ascii(0, 'GIF89a'))) return 'gif';
  if (b.length >= 2 && ascii(0, 'BM')) return 'bmp';
  return null;
}

export function checkSize(format: ImageFormat, width: number, height: number, what = 'image'): void {
  if (!(width >= 1 && height >= 1)) throw new Error(`${format} ${what} has invalid size ${width}x${height}`);
  if (width * height > MAX_PIXELS) {
    throw new Error(`${format} ${what} is ${width}x${height} = ${((width * height) / 1e6).toFixed(1)} megapixels; the limit is ${MAX_PIXELS / 1e6}`);
  }
}

/** Bounds-checked little/big-endian reads over a prefix; reading past it asks for more bytes or,
 *  when the prefix is the whole file, reports truncation. */
export class HeaderReader {
  constructor(
    readonly b: Uint8Array,
    readonly format: ImageFormat,
    readonly complete: boolean,
  ) {}

  need(end: number): void {
    if (end <= this.b.length) return;
    if (this.complete) throw new Error(`${this.format} file is truncated in its header`);
    throw new NeedMoreBytes(end);
  }
  u8(o: number): number {
    this.need(o + 1);
    return this.b[o];
  }
  u16le(o: number): number {
    this.need(o + 2);
    return this.b[o] | (this.b[o + 1] << 8);
  }
  u16be(o: number): number {
    this.need(o + 2);
    return (this.b[o] << 8) | this.b[o + 1];
  }
  u24le(o: number): number {
    return this.u16le(o) + this.u8(o + 2) * 65536;
  }
  u32le(o: number): number {
    return this.u16le(o) + this.u16le(o + 2) * 65536;
  }
  u32be(o: number): number {
    return this.u16be(o) * 65536 + this.u16be(o + 2);
  }
  ascii(o: number, n: number): string {
    this.need(o + n);
    return String.fromCharCode(...this.b.subarray(o, o + n));
  }
}

/**
 * Format and size of an encoded image, with every declared dimension checked against MAX_PIXELS.
 * `complete`: `b` is the whole file (dimensions after the first frame are checked too, and a short
 * file is an error); otherwise `b` is a prefix and NeedMoreBytes asks for more.
 */
export function imageHeader(b: Uint8Array, complete = true): ImageHeader {
  const format = sniffFormat(b);
  if (!format) {
    if (!complete && b.length < 12) throw new NeedMoreBytes(12);
    const head = [...b.subarray(0, 8)].map((x) => x.toString(16).padStart(2, '0')).join(' ');
    throw new Error(`unrecognised image format (first bytes ${head || 'none'}); supported: JPEG, PNG, WebP, GIF, BMP`);
  }
  const r = new HeaderReader(b, format, complete);
  const [width, height] = { jpeg: jpegSize, png: pngSize, webp: webpSize, gif: gifSize, bmp: bmpSize }[format](r);
  checkSize(format, width, height);
  return { format, width, height };
}

/** Markers up to the first SOFn (junk between markers skipped, as PIL and libjpeg do). */
function jpegSize(r: HeaderReader): [number, number] {
  let o = 2;
  for (;;) {
    while (r.u8(o) !== 0xff) o++;
    while (r.u8(o) === 0xff) o++;
    const marker = r.u8(o++);
    if (marker === 0xd9 || marker === 0xda) throw new Error('jpeg has no frame header (SOF) before its scan data');
    if ((marker >= 0xd0 && marker <= 0xd7) || marker === 0x01) continue; // no length
    const length = r.u16be(o);
    if (length < 2) throw new Error(`jpeg marker 0x${marker.toString(16)} has invalid length ${length}`);
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof) return [r.u16be(o + 5), r.u16be(o + 3)];
    o += length;
  }
}

const PNG_DEPTHS: Record<number, number[]> = { 0: [1, 2, 4, 8, 16], 2: [8, 16], 3: [1, 2, 4, 8], 4: [8, 16], 6: [8, 16] };

function pngSize(r: HeaderReader): [number, number] {
  if (r.ascii(12, 4) !== 'IHDR' || r.u32be(8) !== 13) throw new Error('png does not start with an IHDR chunk');
  const depth = r.u8(24);
  const colorType = r.u8(25);
  if (!PNG_DEPTHS[colorType]?.includes(depth)) throw new Error(`png has invalid colour type ${colorType} with bit depth ${depth}`);
  return [r.u32be(16), r.u32be(20)];
}

/** PNG colour type and bit depth from IHDR (the header must have been checked). */
export function pngFormat(b: Uint8Array): { colorType: number; depth: number } {
  return { depth: b[24], colorType: b[25] };
}

/** Walks the RIFF chunks: the VP8X canvas, or the first VP8 / VP8L bitstream, gives the size; on a
 *  complete file every animation frame and bitstream is checked too. */
function webpSize(r: HeaderReader): [number, number] {
  let size: [number, number] | null = null;
  const riffEnd = 8 + r.u32le(4);
  const end = r.complete ? Math.min(r.b.length, riffEnd) : riffEnd;
  const walk = (from: number, to: number, inFrame: boolean): void => {
    for (let o = from; o + 8 <= to; ) {
      const type = r.ascii(o, 4);
      const len = r.u32le(o + 4);
      const p = o + 8;
      let dims: [number, number] | null = null;
      if (type === 'VP8X') dims = [r.u24le(p + 4) + 1, r.u24le(p + 7) + 1];
      else if (type === 'VP8 ') {
        if (r.u8(p + 3) !== 0x9d || r.u8(p + 4) !== 0x01 || r.u8(p + 5) !== 0x2a) throw new Error('webp VP8 bitstream has no start code');
        dims = [r.u16le(p + 6) & 0x3fff, r.u16le(p + 8) & 0x3fff];
      } else if (type === 'VP8L') {
        if (r.u8(p) !== 0x2f) throw new Error('webp VP8L bitstream has a bad signature');
        const bits = r.u32le(p + 1);
        dims = [(bits & 0x3fff) + 1, ((bits >>> 14) & 0x3fff) + 1];
      } else if (type === 'ANMF') {
        checkSize('webp', r.u24le(p + 6) + 1, r.u24le(p + 9) + 1, 'animation frame');
        if (!size) throw new Error('webp animation frame before the VP8X canvas');
        if (!r.complete) return; // the canvas is known; a probe stops here
        walk(p + 16, Math.min(p + len, to), true);
      }
      if (dims) {
        checkSize('webp', dims[0], dims[1], type === 'VP8X' ? 'canvas' : 'bitstream');
        if (!size && !inFrame) size = dims;
        if (!r.complete) return;
      }
      o = p + len + (len & 1);
    }
  };
  walk(12, end, false);
  if (!size) throw new Error('webp has no VP8X, VP8 or VP8L chunk');
  return size;
}

/** Screen, then blocks up to the first image descriptor (PIL grows the screen to fit that frame);
 *  on a complete file every later frame descriptor is checked too. */
function gifSize(r: HeaderReader): [number, number] {
  const screenW = r.u16le(6);
  const screenH = r.u16le(8);
  if (screenW * screenH > MAX_PIXELS) checkSize('gif', screenW, screenH, 'screen');
  const packed = r.u8(10);
  let o = 13 + (packed & 0x80 ? 3 << ((packed & 7) + 1) : 0);
  let size: [number, number] | null = null;
  for (;;) {
    const block = r.u8(o++);
    if (block === 0x3b) break; // trailer
    if (block === 0x21) o++; // extension label, then sub-blocks
    else if (block === 0x2c) {
      const left = r.u16le(o);
      const top = r.u16le(o + 2);
      const w = r.u16le(o + 4);
      const h = r.u16le(o + 6);
      checkSize('gif', w, h, 'frame');
      const grown: [number, number] = [Math.max(screenW, left + w), Math.max(screenH, top + h)];
      checkSize('gif', grown[0], grown[1], 'frame extent');
      size ??= grown;
      if (!r.complete) return size;
      const lct = r.u8(o + 8);
      o += 9 + (lct & 0x80 ? 3 << ((lct & 7) + 1) : 0) + 1; // descriptor, colour table, LZW code size
    } else if (size) break; // garbage after the first frame: decoders stop there
    else throw new Error(`gif has an unknown block 0x${block.toString(16)} before its first frame`);
    for (let n = r.u8(o); n !== 0; n = r.u8(o)) o += n + 1; // sub-blocks
    o++;
  }
  if (!size) throw new Error('gif has no image frame');
  return size;
}

/** The BMP info header as PIL's BmpImagePlugin reads it (sizes unsigned; a top-down height is
 *  recognised by its top byte 0xFF). */
export function bmpInfo(r: HeaderReader) {
  const headerSize = r.u32le(14);
  if (headerSize === 12) {
    return { headerSize, width: r.u16le(18), height: r.u16le(20), topDown: false, bits: r.u16le(24), compression: 0, colors: 0 };
  }
  if (![40, 64, 108, 124].includes(headerSize)) throw new Error(`bmp info header of ${headerSize} bytes is not supported (12, 40, 64, 108, 124 are)`);
  const rawHeight = r.u32le(22);
  const topDown = r.u8(25) === 0xff;
  return {
    headerSize,
    width: r.u32le(18),
    height: topDown ? 2 ** 32 - rawHeight : rawHeight,
    topDown,
    bits: r.u16le(28),
    compression: r.u32le(30),
    colors: r.u32le(46),
  };
}

function bmpSize(r: HeaderReader): [number, number] {
  const { width, height } = bmpInfo(r);
  return [width, height];
}
