"""Python side of the preprocessing parity tests (run with /usr/bin/python3: PIL 9.4 + numpy).

Reads one JSON request on stdin, prints one JSON answer on stdout; pixel data goes through files.
The dynamic_preprocess / get_index code below follows OpenGVLab's InternVL preprocessing as
described in shared/docs/pvc-architecture.md section 9, written with PIL and numpy.
"""
import json
import os
import subprocess
import sys

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
    save('rgb_301x203.bmp', Image.fromarray(content(301, 203)))
    save('gray_55x70.bmp', Image.fromarray(content(55, 70)[:, :, 0]))
    save('palette_60x31.bmp', Image.fromarray(content(60, 31)).quantize(16))
    return files


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
    elif op == 'tiles':
        ans = tiles(req)
    elif op == 'resize':
        ans = resize(req)
    elif op == 'ratios':
        ans = {str(n): target_ratios(req['minNum'], n) for n in range(req['minNum'], req['maxNum'] + 1)}
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
