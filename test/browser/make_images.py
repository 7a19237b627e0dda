# Awkward test images for the browser decoder, and PIL's RGB for each (Image.open(...).convert('RGB')).
# Usage: make_images.py OUT_DIR ASSET...   writes OUT_DIR/NAME (the file) and OUT_DIR/NAME.rgb (raw RGB),
# and prints a JSON list of {name, width, height}.
import io, json, os, sys
import numpy as np
from PIL import Image

out, assets = sys.argv[1], sys.argv[2:]
rng = np.random.default_rng(int(os.environ.get('SEED', '7')))
files = {}

def save(name, img, **kw):
    b = io.BytesIO()
    img.save(b, **kw)
    files[name] = b.getvalue()

noise = rng.integers(0, 256, (97, 131, 3), dtype=np.uint8)
smooth = np.clip(np.add.outer(np.arange(203), np.arange(157))[..., None] * [1, 0.6, 0.3] % 256, 0, 255).astype(np.uint8)
rgba = np.concatenate([noise, rng.integers(0, 256, (97, 131, 1), dtype=np.uint8)], -1)
save('rgba-random-alpha.png', Image.fromarray(rgba, 'RGBA'), format='PNG')
save('gray.png', Image.fromarray(noise[..., 0], 'L'), format='PNG')
save('gray16.png', Image.fromarray((noise[..., 0].astype(np.uint16) * 257), 'I;16'), format='PNG')
save('palette.png', Image.fromarray(smooth).convert('P', palette=Image.ADAPTIVE, colors=37), format='PNG')
save('odd-1x1.png', Image.fromarray(noise[:1, :1]), format='PNG')
save('baseline-q90.jpg', Image.fromarray(smooth), format='JPEG', quality=90)
save('noise-420.jpg', Image.fromarray(noise), format='JPEG', quality=75)
save('noise-444.jpg', Image.fromarray(noise), format='JPEG', quality=95, subsampling=0)
save('progressive.jpg', Image.fromarray(smooth), format='JPEG', quality=80, progressive=True)
save('gray.jpg', Image.fromarray(noise[..., 1], 'L'), format='JPEG', quality=85)
exif = Image.Exif()
exif[0x0112] = 6  # rotate 90: browsers honour it, PIL does not
save('exif-rotated.jpg', Image.fromarray(smooth), format='JPEG', quality=90, exif=exif.tobytes())
save('lossless.webp', Image.fromarray(noise), format='WEBP', lossless=True)
save('lossless-alpha.webp', Image.fromarray(rgba, 'RGBA'), format='WEBP', lossless=True)
save('lossy.webp', Image.fromarray(smooth), format='WEBP', quality=80)
for a in assets:
    files[os.path.basename(a)] = open(a, 'rb').read()

listing = []
for name, data in files.items():
    with open(os.path.join(out, name), 'wb') as f:
        f.write(data)
    img = Image.open(io.BytesIO(data)).convert('RGB')
    with open(os.path.join(out, name + '.rgb'), 'wb') as f:
        f.write(img.tobytes())
    listing.append({'name': name, 'width': img.width, 'height': img.height})
print(json.dumps(listing))
