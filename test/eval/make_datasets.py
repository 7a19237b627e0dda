"""Tiny benchmark datasets in the layouts of InternVL's data-preparation guide (internvl_README.md,
internvl_mvbench_README.md), made locally: images with PIL, videos with ffmpeg, a GIF video and a
TVQA-style frame folder. The jsonl files name images as the official ones do ("data/<name>/...",
relative to InternVL's internvl_chat folder, which is ROOT here).

usage: make_datasets.py ROOT [VQA_ITEMS] [MVBENCH_ITEMS_PER_SUBTASK] [MVBENCH_SUBTASKS]
(MVBENCH_SUBTASKS: comma-separated json names to fill; the others get an empty list)
"""
import json
import os
import random
import shutil
import subprocess
import sys

from PIL import Image, ImageDraw

root = sys.argv[1]
n_vqa = int(sys.argv[2]) if len(sys.argv) > 2 else 4
n_mv = int(sys.argv[3]) if len(sys.argv) > 3 else 2
only = sys.argv[4].split(',') if len(sys.argv) > 4 else None
rnd = random.Random(13)


def path(*parts):
    p = os.path.join(root, *parts)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    return p


def image(rel, size, fmt):
    """A chart-like picture: random bars and a label, in a size that gives several tiles."""
    img = Image.new('RGB', size, tuple(rnd.randrange(256) for _ in range(3)))
    d = ImageDraw.Draw(img)
    for k in range(5):
        x = 5 + k * size[0] // 6
        d.rectangle([x, rnd.randrange(size[1] // 2), x + size[0] // 10, size[1] - 5], fill=tuple(rnd.randrange(256) for _ in range(3)))
    d.text((4, 4), str(rnd.randrange(1000)), fill=(255, 255, 255))
    img.save(path(rel), fmt)
    return rel


def jsonl(rel, rows):
    with open(path(rel), 'w') as f:
        for r in rows:
            f.write(json.dumps(r) + '\n')


SIZES = [(160, 90), (90, 200), (120, 120), (230, 70), (64, 64), (300, 160)]
NUMBERS = ['12', '3.5', '45%', '1,200', '0.07', 'Yes', 'No', 'red', '2019']

# ChartQA: data/chartqa/ChartQA Dataset/test/png + test_{human,augmented}.jsonl
for split in ['human', 'augmented']:
    rows = []
    for i in range(n_vqa):
        img = image(f'data/chartqa/ChartQA Dataset/test/png/{split}_{i}.png', SIZES[i % len(SIZES)], 'PNG')
        rows.append({'image': img, 'question': f'What is the value of bar {i} in 20{10 + i}?', 'question_id': 100 + i, 'answer': rnd.choice(NUMBERS)})
    jsonl(f'data/chartqa/test_{split}.jsonl', rows)

# DocVQA: data/docvqa/val/documents + val.jsonl + val/val_v1.0.json (the ANLS ground truth)
rows, gt = [], []
for i in range(n_vqa):
    img = image(f'data/docvqa/val/documents/doc_{i}.png', SIZES[(i + 2) % len(SIZES)], 'PNG')
    answers = [rnd.choice(['ITC Limited', '0.28', 'March 5, 1998', 'Dr. Smith']) for _ in range(1 + i % 2)]
    rows.append({'image': img, 'question': f'What is written in field {i}?', 'question_id': 49150 + i, 'answer': answers})
    gt.append({'questionId': 49150 + i, 'question': f'What is written in field {i}?', 'answers': answers, 'image': img})
jsonl('data/docvqa/val.jsonl', rows)
json.dump({'dataset_name': 'docvqa', 'dataset_version': '1.0', 'dataset_split': 'val', 'data': gt}, open(path('data/docvqa/val/val_v1.0.json'), 'w'))

# InfoVQA: data/infographicsvqa/infographicsvqa_images + val.jsonl + infographicsVQA_val_v1.0_withQT.json
rows, gt = [], []
for i in range(n_vqa):
    img = image(f'data/infographicsvqa/infographicsvqa_images/{30000 + i}.jpeg', SIZES[(i + 4) % len(SIZES)], 'JPEG')
    answers = [rnd.choice(['34%', 'facebook', '2.5 million', 'asia'])]
    rows.append({'image': img, 'question': f'Which share is shown in panel {i}?', 'question_id': 65000 + i, 'answer': answers})
    gt.append({'questionId': 65000 + i, 'question': f'Which share is shown in panel {i}?', 'answers': answers, 'answer_type': ['single span'], 'evidence': ['text'], 'operation/reasoning': []})
jsonl('data/infographicsvqa/val.jsonl', rows)
json.dump({'dataset_name': 'infographicsVQA', 'dataset_version': '1.0', 'dataset_split': 'val', 'data': gt}, open(path('data/infographicsvqa/infographicsVQA_val_v1.0_withQT.json'), 'w'))

# AI2D: data/ai2diagram/AI2D_TEST + test_vlmevalkit.jsonl (options in the question, letter answers)
rows = []
for i in range(n_vqa):
    img = image(f'data/ai2diagram/AI2D_TEST/{i}.png', SIZES[(i + 1) % len(SIZES)], 'PNG')
    q = f'Which label marks the leaf in diagram {i}?\nA. A\nB. B\nC. C\nD. D\nAnswer with the option\'s letter from the given choices directly.'
    rows.append({'image': img, 'question': q, 'question_id': f'{i}.png-{i}', 'answer': rnd.choice('ABCD')})
jsonl('data/ai2diagram/test_vlmevalkit.jsonl', rows)

# TextVQA: data/textvqa/train_images + textvqa_val.jsonl + textvqa_val_annotations.json (ten answers each)
rows, anns = [], []
for i in range(n_vqa):
    img = image(f'data/textvqa/train_images/{i:016x}.jpg', SIZES[(i + 3) % len(SIZES)], 'JPEG')
    answers = [rnd.choice(['dakota', 'Dakota', 'the dakota', 'nikon', 'two', '2']) for _ in range(10)]
    rows.append({'image': img, 'question': f'what brand is camera {i}?', 'question_id': 34602 + i, 'answer': answers[0]})
    anns.append({'question_id': 34602 + i, 'image_id': f'{i:016x}', 'answers': [{'answer': a, 'answer_id': k + 1} for k, a in enumerate(answers)]})
jsonl('data/textvqa/textvqa_val.jsonl', rows)
json.dump({'annotations': anns}, open(path('data/textvqa/textvqa_val_annotations.json'), 'w'))

# MVBench: data/MVBench/json/*.json + data/MVBench/video/<source>/...
mv = os.path.join(root, 'data/MVBench')
clip = path('data/MVBench/_clip.mp4')
gif = path('data/MVBench/_clip.gif')
ff = ['ffmpeg', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=80x60:rate=10:duration=3']
subprocess.run(ff + ['-pix_fmt', 'yuv420p', clip], check=True)
subprocess.run(['ffmpeg', '-v', 'error', '-y', '-f', 'lavfi', '-i', 'testsrc=size=64x48:rate=10:duration=2', gif], check=True)

SUBTASKS = [  # json file, folder, kind ('mp4', 'gif' or 'frames'), has start/end
    ('action_sequence.json', 'star/Charades_v1_480', 'mp4', True),
    ('action_prediction.json', 'star/Charades_v1_480', 'mp4', True),
    ('action_antonym.json', 'ssv2_video', 'mp4', False),
    ('fine_grained_action.json', 'Moments_in_Time_Raw/videos', 'gif', False),
    ('unexpected_action.json', 'FunQA_test/test', 'mp4', False),
    ('object_existence.json', 'clevrer/video_validation', 'mp4', False),
    ('object_interaction.json', 'star/Charades_v1_480', 'mp4', True),
    ('object_shuffle.json', 'perception/videos', 'mp4', False),
    ('moving_direction.json', 'clevrer/video_validation', 'mp4', False),
    ('action_localization.json', 'sta/sta_video', 'mp4', True),
    ('scene_transition.json', 'scene_qa/video', 'gif', False),
    ('action_count.json', 'perception/videos', 'mp4', False),
    ('moving_count.json', 'clevrer/video_validation', 'mp4', False),
    ('moving_attribute.json', 'clevrer/video_validation', 'mp4', False),
    ('state_change.json', 'perception/videos', 'mp4', False),
    ('fine_grained_pose.json', 'nturgbd', 'mp4', False),
    ('character_order.json', 'perception/videos', 'mp4', False),
    ('egocentric_navigation.json', 'vlnqa', 'mp4', False),
    ('episodic_reasoning.json', 'tvqa/frames_fps3_hq', 'frames', True),
    ('counterfactual_inference.json', 'clevrer/video_validation', 'mp4', False),
]
for j, (json_file, folder, kind, bound) in enumerate(SUBTASKS):
    items = []
    for i in range(n_mv if only is None or json_file in only else 0):
        name = f'{json_file[:-5]}_{i}'
        if kind == 'frames':
            video = name
            count = 14 + 5 * i
            for f in range(1, count + 1):
                Image.new('RGB', (40 + 8 * i, 30), (f * 17 % 256, 90, 200 - f * 9 % 200)).save(path('data/MVBench/video', folder, video, f'{f:05d}.jpg'))
        else:
            video = f'{name}.{kind}'
            shutil.copy(clip if kind == 'mp4' else gif, path('data/MVBench/video', folder, video))
        candidates = rnd.sample(['left', 'right', 'up', 'down', 'The person opened the door.', 'red', '3'], 2 + (i + j) % 3)
        item = {'video': video, 'question': f'What happens in clip {j}.{i}?', 'candidates': candidates, 'answer': candidates[(i + j) % len(candidates)]}
        if bound:
            item['start'] = round(0.3 + 0.4 * i, 1)
            item['end'] = round(item['start'] + 1.7, 1) if kind != 'frames' else 4.2 + i
        items.append(item)
    json.dump(items, open(path('data/MVBench/json', json_file), 'w'))
os.remove(clip)
os.remove(gif)
