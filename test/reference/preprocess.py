"""Image and video preprocessing as OpenGVLab's utils/preprocess.py does it (pvc-architecture.md section 9).

Images: dynamic tiling over the candidate grids (sorted by tile count, CPython set order within a count,
ties broken towards more tiles for large images), PIL bicubic resize, row-major crops, thumbnail last,
then ToTensor + ImageNet normalisation in float32. Videos: get_index frame sampling, frames decoded
with ffmpeg (decord is not available here), one tile per frame.
"""
import json
import subprocess

import numpy as np
import torch
from PIL import Image

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def candidate_grids(min_num, max_num):
    """(columns, rows) candidates in the original order: a set sorted (stably) by tile count."""
    ratios = set((i, j) for n in range(min_num, max_num + 1) for i in range(1, n + 1) for j in range(1, n + 1)
                 if min_num <= i * j <= max_num)
    return sorted(ratios, key=lambda x: x[0] * x[1])


def closest_grid(aspect, grids, width, height, image_size):
    best_diff, best = float('inf'), (1, 1)
    area = width * height
    for cols, rows in grids:
        diff = abs(aspect - cols / rows)
        if diff < best_diff:
            best_diff, best = diff, (cols, rows)
        elif diff == best_diff and area > 0.5 * image_size * image_size * cols * rows:
            best = (cols, rows)
    return best


def dynamic_tiles(image, min_num, max_num, image_size, use_thumbnail):
    """PIL RGB image -> list of image_size x image_size PIL tiles (thumbnail last when there are several)."""
    width, height = image.size
    cols, rows = closest_grid(width / height, candidate_grids(min_num, max_num), width, height, image_size)
    resized = image.resize((image_size * cols, image_size * rows), Image.BICUBIC)
    tiles = []
    for b in range(cols * rows):
        x, y = (b % cols) * image_size, (b // cols) * image_size
        tiles.append(resized.crop((x, y, x + image_size, y + image_size)))
    if use_thumbnail and len(tiles) != 1:
        tiles.append(image.resize((image_size, image_size), Image.BICUBIC))
    return tiles


def to_tensor(tile, image_size):
    """ToTensor + Normalize (float32, as torchvision computes them); the Resize before is a no-op here."""
    if tile.size != (image_size, image_size):
        tile = tile.resize((image_size, image_size), Image.BICUBIC)
    x = torch.from_numpy(np.asarray(tile, dtype=np.uint8).copy()).permute(2, 0, 1).contiguous()
    x = x.to(torch.float32).div(255)
    mean = torch.tensor(MEAN, dtype=torch.float32)[:, None, None]
    std = torch.tensor(STD, dtype=torch.float32)[:, None, None]
    return x.sub(mean).div(std)


def load_image(path, image_size, min_num, max_num, use_thumbnail, dynamic=True):
    """Image file -> pixel values [tiles, 3, S, S]."""
    image = Image.open(path).convert('RGB')
    tiles = dynamic_tiles(image, min_num, max_num, image_size, use_thumbnail) if dynamic else [image]
    return torch.stack([to_tensor(t, image_size) for t in tiles])


def get_index(num_frames, fps, num_segments, bound=None):
    """Frame indices sampled as the original get_index (decord max_frame = num_frames - 1)."""
    max_frame = num_frames - 1
    if bound:
        start, end = bound
        start_idx, end_idx = max(0, round(start * fps)), min(round(end * fps), max_frame)
    else:
        start_idx, end_idx = 0, max_frame
    seg = float(end_idx - start_idx) / num_segments
    return np.array([int(start_idx + seg / 2 + np.round(seg * k)) for k in range(num_segments)])


def probe_video(path):
    """(frame count, width, height, average fps) of the first video stream, counting decoded frames."""
    out = subprocess.run(
        ['ffprobe', '-v', 'error', '-select_streams', 'v:0', '-count_frames', '-show_entries',
         'stream=nb_read_frames,width,height,avg_frame_rate', '-of', 'json', path],
        check=True, capture_output=True, text=True).stdout
    s = json.loads(out)['streams'][0]
    num, den = (int(v) for v in s['avg_frame_rate'].split('/'))
    return int(s['nb_read_frames']), int(s['width']), int(s['height']), num / den


def decode_frames(path, indices, width, height):
    """RGB frames (numpy uint8 [H, W, 3]) at the given decode-order indices, via ffmpeg."""
    select = '+'.join(f'eq(n\\,{i})' for i in sorted(set(indices.tolist())))
    raw = subprocess.run(
        ['ffmpeg', '-v', 'error', '-nostdin', '-threads', '1', '-i', path, '-vf', f'select={select}',
         '-vsync', '0', '-f', 'rawvideo', '-pix_fmt', 'rgb24', '-'],
        check=True, capture_output=True).stdout
    frames = np.frombuffer(raw, dtype=np.uint8).reshape(-1, height, width, 3)
    by_index = dict(zip(sorted(set(indices.tolist())), frames))
    if len(by_index) != len(set(indices.tolist())) or len(frames) != len(by_index):
        raise RuntimeError(f'ffmpeg returned {len(frames)} frames for {len(set(indices.tolist()))} requested')
    return [by_index[i] for i in indices.tolist()]


def load_video(path, image_size, num_segments):
    """Video file -> (pixel values [T, 3, S, S], frame indices): one tile per frame (max_num = 1)."""
    n, w, h, fps = probe_video(path)
    indices = get_index(n, fps, num_segments)
    tiles = []
    for frame in decode_frames(path, indices, w, h):
        image = Image.fromarray(frame).convert('RGB')
        tiles.append(to_tensor(dynamic_tiles(image, 1, 1, image_size, False)[0], image_size))
    return torch.stack(tiles), indices
