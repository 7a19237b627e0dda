"""Python side of the preprocessing parity tests (run with /usr/bin/python3: PIL 9.4 + numpy).

Reads one JSON request on stdin, prints one JSON answer on stdout; pixel data goes through files.
The dynamic_preprocess / get_index code below follows OpenGVLab's InternVL preprocessing as
described in shared/docs/pvc-architecture.md section 9, written with PIL and numpy.
"""
import io
import json
import os
import struct
import subprocess
import sys
import zlib

import numpy as np
from PIL import Image


def target_ratios(min_num, max_num):
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1)
                 for j in range(1, n + 1) if min_num <= i * j <= max_num)
    return sorted(ratios, key=lambda x: x[0] * x[1])


def closest_ratio(aspect, ratios, width, height, size):
    best_diff, best = float('inf'), (1, 1)
    area = width * height
    for r in ratios:
        diff = abs(aspect - r[0] / r[1])
        if diff < best_diff:
            best_diff, best = diff, r
        elif diff == best_diff and area > 0.5 * size * size * r[0] * r[1]:
            best = r
    return best


def dynamic_preprocess(image, max_num, size, use_thumbnail, min_num=1):
    w, h = image.size
    cols, rows = closest_ratio(w / h, target_ratios(min_num, max_num), w, h, size)
    resized = image.resize((size * cols, size * rows))
    tiles = [resized.crop(((b % cols) * size, (b // cols) * size,
                           (b % cols + 1) * size, (b // cols + 1) * size)) for b in range(cols * rows)]
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((size, size)))
    return (cols, rows), tiles


def gen_images(out_dir, seed):
    """Awkward sizes and every supported container; smooth content plus noise so that JPEG and
    resampling both have something to do. Returns [{name, width, height}]."""
    rs = np.random.RandomState(seed)

    def content(w, h):
        y, x = np.mgrid[0:h, 0:w].astype(np.float64)
        base = np.stack([127 + 120 * np.sin(x / max(w, 1) * 7 + c * 2 + y / max(h, 1) * 3) for c in range(3)], -1)
        return np.clip(base + rs.normal(0, 25, (h, w, 3)), 0, 255).astype(np.uint8)

    files = []

    def save(name, img, **kw):
        img.save(os.path.join(out_dir, name), **kw)
        files.append({'name': name, 'width': img.size[0], 'height': img.size[1]})

    for w, h in [(1, 1), (1, 2000), (2000, 1), (4000, 3), (37, 91), (600, 450), (448, 448), (449, 447), (1700, 900)]:
        save(f'rgb_{w}x{h}.png', Image.fromarray(content(w, h)))
    rgba = np.concatenate([content(91, 37), rs.randint(0, 256, (37, 91, 1)).astype(np.uint8)], -1)
    save('rgba_91x37.png', Image.fromarray(rgba, 'RGBA'))
    save('la_50x37.png', Image.fromarray(rgba[:, :50, :2].copy(), 'LA'))
    save('gray_123x45.png', Image.fromarray(content(123, 45)[:, :, 0]))
    save('palette_333x250.png', Image.fromarray(content(333, 250)).quantize(200))
    pal_t = Image.fromarray(content(80, 64)).quantize(64)
    save('palette_trns_80x64.png', pal_t, transparency=5)
    save('mono_77x41.png', Image.fromarray(content(77, 41)[:, :, 0] > 127))
    big = Image.fromarray(content(1000, 700))
    save('baseline_1000x700.jpg', big, quality=90)
    save('progressive_1000x700.jpg', big, quality=85, progressive=True)
    save('baseline444_333x517.jpg', Image.fromarray(content(333, 517)), quality=95, subsampling=0)
    save('gray_210x97.jpg', Image.fromarray(content(210, 97)[:, :, 0]), quality=90)
    save('cmyk_71x53.jpg', Image.fromarray(content(71, 53)).convert('CMYK'), quality=90)
    save('lossy_500x301.webp', Image.fromarray(content(500, 301)), quality=80)
    save('lossless_127x64.webp', Image.fromarray(content(127, 64)), lossless=True)
    save('alpha_97x55.webp', Image.fromarray(rgba, 'RGBA').resize((97, 55)), quality=90)
    save('first_frame_150x99.gif', Image.fromarray(content(150, 99)).quantize(128), save_all=True,
         append_images=[Image.fromarray(content(150, 99)).quantize(64)])
    save('transparent_70x45.gif', Image.fromarray(content(70, 45)).quantize(32), transparency=3)
    # LZW corners: 2-bit codes, and noise in 256 colours that fills the 4096-code table (deferred clears)
    save('two_colour_99x37.gif', Image.fromarray(content(99, 37)).quantize(2))
    noise = Image.fromarray(rs.randint(0, 256, (240, 320, 3)).astype(np.uint8)).quantize(256)
    save('noise_320x240.gif', noise, interlace=False)
    save('rgb_301x203.bmp', Image.fromarray(content(301, 203)))
    save('gray_55x70.bmp', Image.fromarray(content(55, 70)[:, :, 0]))
    save('palette_60x31.bmp', Image.fromarray(content(60, 31)).quantize(16))
    return files


def decode_all(out_dir, names):
    """PIL's Image.open(f).convert('RGB') of each file: [{name, width, height}] with the pixels in
    name + '.rgb', or [{name, error}] when PIL refuses the file."""
    res = []
    for name in names:
        path = os.path.join(out_dir, name)
        try:
            img = Image.open(path).convert('RGB')
            np.asarray(img).tofile(path + '.rgb')
            res.append({'name': name, 'width': img.size[0], 'height': img.size[1]})
        except Exception as e:  # PIL refuses: the engine must refuse too
            res.append({'name': name, 'error': f'{type(e).__name__}: {e}'})
    return res


def png_chunk(kind, data):
    return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)


def gen_png_matrix(out_dir, seed):
    """Every PNG colour type x bit depth x tRNS (x interlace), written by hand (PIL cannot write
    most of them), with random samples; the tRNS colour occurs in the image."""
    rs = np.random.RandomState(seed)
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    names = []
    for ct, depths in [(0, [1, 2, 4, 8, 16]), (2, [8, 16]), (3, [1, 2, 4, 8]), (4, [8, 16]), (6, [8, 16])]:
        for bd in depths:
            for trns in ([0, 1] if ct in (0, 2, 3) else [0]):
                for interlace in (0, 1):
                    w, h = int(rs.randint(1, 40)), int(rs.randint(2, 30))
                    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ct]
                    entries = min(1 << bd, 1 + int(rs.randint(1, 256)))
                    top = entries - 1 if ct == 3 else (1 << bd) - 1
                    px = rs.randint(0, top + 1, (h, w, ch)).astype(np.uint32)
                    px[1, : (w + 1) // 2] = px[0, 0]

                    def row_bytes(r):
                        if bd < 8:
                            bits = ''.join(format(int(v), f'0{bd}b') for v in r.reshape(-1))
                            bits += '0' * (-len(bits) % 8)
                            return bytes(int(bits[i:i + 8], 2) for i in range(0, len(bits), 8))
                        return r.astype(np.uint8 if bd == 8 else '>u2').tobytes()

                    subs = [px[y0::dy, x0::dx] for x0, y0, dx, dy in passes] if interlace else [px]
                    raw = b''.join(b'\0' + row_bytes(r) for sub in subs if sub.shape[1] for r in sub)
                    data = b'\x89PNG\r\n\x1a\n' + png_chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, bd, ct, 0, 0, interlace))
                    if ct == 3:
                        data += png_chunk(b'PLTE', rs.randint(0, 256, (entries, 3)).astype(np.uint8).tobytes())
                        if trns:
                            data += png_chunk(b'tRNS', rs.randint(0, 256, int(rs.randint(1, entries + 1))).astype(np.uint8).tobytes())
                    elif trns:
                        data += png_chunk(b'tRNS', struct.pack(f'>{ch}H', *[int(v) for v in px[0, 0]]))
                    data += png_chunk(b'IDAT', zlib.compress(raw)) + png_chunk(b'IEND', b'')
                    name = f'ct{ct}_depth{bd}_trns{trns}_interlace{interlace}.png'
                    with open(os.path.join(out_dir, name), 'wb') as f:
                        f.write(data)
                    names.append(name)
    return decode_all(out_dir, names)


def bmp_file(width, height, bits, pixels, header=40, compression=0, palette=b'', colors=0, masks=b'',
             offset=None, gap=b'', top_down=False):
    """A BMP written field by field: file header, info header of `header` bytes (12 = OS/2 v1,
    40 = Windows v3, 64 = OS/2 v2, 108 = v4, 124 = v5), masks, palette, `gap`, pixel data."""
    if header == 12:
        info = struct.pack('<IHHHH', 12, width, height, 1, bits)
    else:
        info = struct.pack('<IiiHHIIiiII', header, width, -height if top_down else height, 1, bits, compression,
                           len(pixels), 2835, 2835, colors, 0)
        if header > 40:
            extra = bytearray(header - 40)
            extra[:len(masks)] = masks
            info += bytes(extra)
            masks = b''
    body = info + masks + palette + gap
    start = 14 + len(body) if offset is None else offset
    return b'BM' + struct.pack('<IHHI', 14 + len(body) + len(pixels), 0, 0, start) + body + pixels


def bmp_rows(rs, width, height, bits):
    stride = ((width * bits + 31) >> 3) & ~3
    return bytes(rs.randint(0, 256, stride * height).astype(np.uint8))


def rle_stream(rs, width, height, rle4, style):
    """Random RLE8/RLE4 data: encoded and absolute runs, end-of-line, deltas; `style` adds runs
    past the row end ('overflow') or drops the end-of-bitmap so the data runs out ('short')."""
    out = bytearray()
    top = 16 if rle4 else 256
    for _ in range(height):
        x = 0
        while x < width:
            n = int(rs.randint(1, max(2, min(width - x, 12) + (6 if style == 'overflow' else 0))))
            kind = rs.randint(0, 4)
            if kind == 0 and n >= 3:
                body = rs.randint(0, 256 if rle4 else top, (n + 1) // 2 if rle4 else n).astype(np.uint8).tobytes()
                out += bytes([0, n]) + body + (b'\0' if len(body) % 2 else b'')
            elif kind == 1 and style == 'delta':
                out += bytes([0, 2, int(rs.randint(0, 3)), int(rs.randint(0, 2))])
            else:
                out += bytes([n, int(rs.randint(0, 256 if rle4 else top))])
            x += n
        out += b'\0\0'
    if style != 'short':
        out += b'\0\1'
    else:
        del out[len(out) // 2:]
    return bytes(out)


def gen_bmp_variants(out_dir, seed):
    rs = np.random.RandomState(seed)
    files = {}

    def pal(n, entry=4, gray=False):
        if gray:
            return b''.join(bytes([i, i, i] + [0] * (entry - 3)) for i in range(n))
        return rs.randint(0, 256, n * entry).astype(np.uint8).tobytes()

    def img(w, h):
        y, x = np.mgrid[0:h, 0:w]
        return np.clip(np.stack([x * 7 + y, y * 5 + 30, (x ^ y) * 3], -1) + rs.randint(0, 40, (h, w, 3)), 0, 255).astype(np.uint8)

    # PIL's own writer: 1, L, P and RGB
    for mode in ['1', 'L', 'P', 'RGB']:
        im = Image.fromarray(img(29, 13))
        im = im.convert(mode) if mode != 'P' else im.quantize(37)
        buf = io.BytesIO()
        im.save(buf, 'BMP')
        files[f'pil_{mode}.bmp'] = buf.getvalue()
    w, h = 23, 11
    for bits in (1, 4, 8):
        n = 1 << bits
        files[f'v3_{bits}bit.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits), palette=pal(n), colors=n)
        files[f'v3_{bits}bit_topdown.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits), palette=pal(n), colors=n, top_down=True)
        files[f'os2v1_{bits}bit.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits), header=12, palette=pal(n, 3))
        files[f'os2v2_{bits}bit.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits), header=64, palette=pal(n), colors=n)
        files[f'v5_{bits}bit_short_palette.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits), header=124, palette=pal(max(1, n // 3)), colors=max(1, n // 3))
    files['v3_8bit_gray_palette.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8), palette=pal(256, gray=True), colors=256)
    files['v3_8bit_gray_palette_100.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8), palette=pal(100, gray=True), colors=100)
    files['v3_4bit_gray_palette.bmp'] = bmp_file(w, h, 4, bmp_rows(rs, w, h, 4), palette=pal(16, gray=True), colors=16)
    files['v3_8bit_bw_palette.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8), palette=bytes([0, 0, 0, 0, 255, 255, 255, 0]), colors=2)
    files['v3_1bit_bw_palette.bmp'] = bmp_file(w, h, 1, bmp_rows(rs, w, h, 1), palette=bytes([0, 0, 0, 0, 255, 255, 255, 0]), colors=2)
    files['os2v1_24bit.bmp'] = bmp_file(w, h, 24, bmp_rows(rs, w, h, 24), header=12)
    files['os2v2_24bit.bmp'] = bmp_file(w, h, 24, bmp_rows(rs, w, h, 24), header=64)
    for bits in (16, 24, 32):
        files[f'v3_{bits}bit.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits))
        files[f'v3_{bits}bit_topdown.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits), top_down=True)
        # a palette stored with true-colour pixels (allowed; PIL skips it through the offset)
        files[f'v3_{bits}bit_with_palette.bmp'] = bmp_file(w, h, bits, bmp_rows(rs, w, h, bits), palette=pal(16), colors=16)
    masks16 = {'565': (0xF800, 0x7E0, 0x1F), '555': (0x7C00, 0x3E0, 0x1F), '444': (0xF00, 0xF0, 0xF)}
    for name, m in masks16.items():
        files[f'v3_16bit_bitfields_{name}.bmp'] = bmp_file(w, h, 16, bmp_rows(rs, w, h, 16), compression=3, masks=struct.pack('<III', *m))
        files[f'v4_16bit_bitfields_{name}.bmp'] = bmp_file(w, h, 16, bmp_rows(rs, w, h, 16), header=108, compression=3, masks=struct.pack('<IIII', *m, 0))
        files[f'v3_16bit_bitfields_{name}_with_palette.bmp'] = bmp_file(w, h, 16, bmp_rows(rs, w, h, 16), compression=3, masks=struct.pack('<III', *m), palette=pal(8), colors=8)
    masks32 = [(0xFF0000, 0xFF00, 0xFF, 0), (0xFF000000, 0xFF0000, 0xFF00, 0), (0xFF000000, 0xFF0000, 0xFF00, 0xFF),
               (0xFF, 0xFF00, 0xFF0000, 0xFF000000), (0xFF0000, 0xFF00, 0xFF, 0xFF000000), (0, 0, 0, 0), (0xFF, 0xFF00, 0xFF0000, 0)]
    for k, m in enumerate(masks32):
        files[f'v5_32bit_bitfields_{k}.bmp'] = bmp_file(w, h, 32, bmp_rows(rs, w, h, 32), header=124, compression=3, masks=struct.pack('<IIII', *m))
        files[f'v3_32bit_bitfields_{k}.bmp'] = bmp_file(w, h, 32, bmp_rows(rs, w, h, 32), compression=3, masks=struct.pack('<III', *m[:3]))
    files['v4_32bit_alpha_bitfields_compression6.bmp'] = bmp_file(w, h, 32, bmp_rows(rs, w, h, 32), header=108, compression=6, masks=struct.pack('<IIII', *masks32[4]))
    files['v3_24bit_bitfields.bmp'] = bmp_file(w, h, 24, bmp_rows(rs, w, h, 24), compression=3, masks=struct.pack('<III', 0xFF0000, 0xFF00, 0xFF))
    # pixel data offsets: a gap after the palette, 0 (PIL reads on after the palette), and one that
    # points just past the header (PIL skips the palette on its own)
    files['v3_8bit_offset_gap.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8), palette=pal(256), colors=256, gap=bytes(37))
    files['v3_24bit_offset_gap.bmp'] = bmp_file(w, h, 24, bmp_rows(rs, w, h, 24), gap=bytes(3))
    files['v3_8bit_offset_zero.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8), palette=pal(256), colors=256, offset=0)
    files['v3_8bit_offset_at_header.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8), palette=pal(256), colors=256, offset=54)
    files['v3_8bit_indices_past_palette.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8), palette=pal(5), colors=5)
    for rle4, bits in ((False, 8), (True, 4)):
        tag = 'rle4' if rle4 else 'rle8'
        for style in ('plain', 'overflow', 'delta', 'short'):
            for top_down in (False, True):
                for k in range(3):
                    ww, hh = int(rs.randint(1, 30)), int(rs.randint(1, 12))
                    files[f'{tag}_{style}{"_topdown" if top_down else ""}_{k}.bmp'] = bmp_file(
                        ww, hh, bits, rle_stream(rs, ww, hh, rle4, style), compression=2 if rle4 else 1,
                        palette=pal(1 << bits), colors=1 << bits, top_down=top_down)
        files[f'{tag}_gray_palette.bmp'] = bmp_file(w, h, bits, rle_stream(rs, w, h, rle4, 'plain'), compression=2 if rle4 else 1, palette=pal(1 << bits, gray=True), colors=1 << bits)
    files['rle8_odd_offset.bmp'] = bmp_file(w, h, 8, rle_stream(rs, w, h, False, 'plain'), compression=1, palette=pal(256), colors=256, gap=b'\0')
    files['v3_2bit.bmp'] = bmp_file(w, h, 2, bmp_rows(rs, w, h, 2), palette=pal(4), colors=4)
    files['v3_8bit_truncated.bmp'] = bmp_file(w, h, 8, bmp_rows(rs, w, h, 8)[:-40], palette=pal(256), colors=256)
    files['v3_negative_width.bmp'] = bmp_file(-w, h, 24, bmp_rows(rs, w, h, 24))
    files['header52.bmp'] = bmp_file(w, h, 24, bmp_rows(rs, w, h, 24), header=52)
    for name, data in files.items():
        with open(os.path.join(out_dir, name), 'wb') as f:
            f.write(data)
    return decode_all(out_dir, list(files))


def gen_fuzz_seeds(out_dir, seed):
    """Small valid files of every format and the variants whose parsers differ, as fuzzing seeds."""
    rs = np.random.RandomState(seed)
    rgb = Image.fromarray(rs.randint(0, 256, (13, 21, 3)).astype(np.uint8))
    files = {}

    def save(name, img, fmt, **kw):
        buf = io.BytesIO()
        img.save(buf, fmt, **kw)
        files[name] = buf.getvalue()

    save('baseline.jpg', rgb, 'JPEG', quality=80)
    save('progressive.jpg', rgb, 'JPEG', progressive=True)
    save('gray.jpg', rgb.convert('L'), 'JPEG')
    save('rgb.png', rgb, 'PNG')
    save('palette_interlaced.png', rgb.quantize(20), 'PNG', interlace=1, transparency=3)
    save('rgba.png', rgb.convert('RGBA'), 'PNG')
    save('lossy.webp', rgb, 'WEBP', quality=70)
    save('lossless.webp', rgb, 'WEBP', lossless=True)
    save('animated.webp', rgb, 'WEBP', save_all=True, append_images=[rgb.rotate(90)])
    save('two_frames.gif', rgb.quantize(16), 'GIF', save_all=True, append_images=[rgb.quantize(8)])
    save('rgb.bmp', rgb, 'BMP')
    save('palette.bmp', rgb.quantize(16), 'BMP')
    files['rle8.bmp'] = bmp_file(21, 13, 8, rle_stream(rs, 21, 13, False, 'delta'), compression=1, palette=bytes(1024), colors=256)
    files['bitfields.bmp'] = bmp_file(21, 13, 16, bmp_rows(rs, 21, 13, 16), compression=3, masks=struct.pack('<III', 0xF800, 0x7E0, 0x1F))
    for name, data in files.items():
        with open(os.path.join(out_dir, name), 'wb') as f:
            f.write(data)
    return sorted(files)


def tiles(req):
    out = []
    for job in req['jobs']:
        img = Image.open(job['path'])
        img = img.convert('RGB')
        rgb = np.asarray(img)
        grid, ts = dynamic_preprocess(img, job['maxNum'], job['size'], job['thumbnail'])
        with open(job['out'], 'wb') as f:
            f.write(rgb.tobytes())
            for t in ts:
                f.write(np.asarray(t).tobytes())
        out.append({'width': img.size[0], 'height': img.size[1], 'grid': grid, 'count': len(ts)})
    return out


def resize(req):
    for job in req['jobs']:
        w, h = job['width'], job['height']
        src = np.fromfile(job['in'], np.uint8).reshape(h, w, 3)
        np.asarray(Image.fromarray(src).resize((job['outWidth'], job['outHeight']))).tofile(job['out'])
    return None


def normalize(req):
    """torchvision ToTensor + Normalize arithmetic in float32 (IEEE ops, same as torch on CPU)."""
    size = req['size']
    x = np.fromfile(req['in'], np.uint8).reshape(-1, size, size, 3).transpose(0, 3, 1, 2)
    x = x.astype(np.float32) / np.float32(255)
    mean = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
    std = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)
    ((x - mean) / std).astype(np.float32).tofile(req['out'])
    return None


def frame_indices(req):
    res = []
    for bound, fps, max_frame, segs in req['cases']:
        start, end = bound if bound else (-100000, 100000)
        start_idx = max(0, round(start * fps))
        end_idx = min(round(end * fps), max_frame)
        seg = float(end_idx - start_idx) / segs
        res.append([int(start_idx + (seg / 2) + np.round(seg * k)) for k in range(segs)])
    return res


def video_frames(req):
    """Independent frame path: decode every frame in order (no select filter, passthrough timing)
    and keep the requested ones by position."""
    w, h = req['width'], req['height']
    size = w * h * 3
    wanted = set(req['indices'])
    kept = {}
    proc = subprocess.Popen(['ffmpeg', '-v', 'error', '-nostdin', '-noautorotate', '-i', req['path'], '-map', '0:v:0',
                             '-vsync', 'passthrough', '-f', 'rawvideo', '-pix_fmt', 'rgb24', 'pipe:1'],
                            stdout=subprocess.PIPE)
    n = 0
    while True:
        frame = proc.stdout.read(size)
        if len(frame) < size:
            break
        if n in wanted:
            kept[n] = frame
        n += 1
    assert proc.wait() == 0
    with open(req['out'], 'wb') as f:
        for i in req['indices']:
            f.write(kept[i])
    return {'decoded': n}


def main():
    req = json.load(sys.stdin)
    op = req['op']
    if op == 'gen':
        ans = gen_images(req['dir'], req['seed'])
    elif op == 'png-matrix':
        ans = gen_png_matrix(req['dir'], req['seed'])
    elif op == 'bmp-variants':
        ans = gen_bmp_variants(req['dir'], req['seed'])
    elif op == 'fuzz-seeds':
        ans = gen_fuzz_seeds(req['dir'], req['seed'])
    elif op == 'tiles':
        ans = tiles(req)
    elif op == 'resize':
        ans = resize(req)
    elif op == 'ratios':
        ns = req.get('only') or range(req['minNum'], req['maxNum'] + 1)
        ans = {str(n): target_ratios(req['minNum'], n) for n in ns}
    elif op == 'normalize':
        ans = normalize(req)
    elif op == 'indices':
        ans = frame_indices(req)
    elif op == 'video':
        ans = video_frames(req)
    else:
        raise ValueError(op)
    json.dump(ans, sys.stdout)


if __name__ == '__main__':
    main()
