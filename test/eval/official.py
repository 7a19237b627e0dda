"""Runs PVC's official evaluation code (../shared/reference/pvc-eval) as the tests' reference.

usage: official.py REFERENCE_DIR < request.json > answer.json

Only imports that are not installed here are stubbed (transformers, decord, cv2, imageio, tqdm and
InternVL's utils.preprocess, whose image transforms the prompts do not depend on); the metric and
dataset code itself runs unchanged. Requests:
  {"op": "scores", "cases": {label: {"metric": M, "entries": [{"answer", "annotation", "subtask"?}, ...]}}}
  {"op": "vqa_items", "root": DIR, "datasets": [ds_name, ...]}   (DIR holds data/...)
  {"op": "mvbench_items", "root": DIR, "num_segments": 16}
"""
import ast
import importlib.util
import json
import os
import sys
import tempfile
import types
from argparse import Namespace

ref = sys.argv[1]


def stub(name, **attrs):
    mod = types.ModuleType(name)
    mod.__dict__.update(attrs)
    sys.modules[name] = mod
    return mod


class Unavailable:
    def __init__(self, *a, **k):
        raise RuntimeError('stubbed: not installed here')


def build_transform(input_size):
    import torch
    return lambda img: torch.zeros(3, 2, 2)


stub('tqdm', tqdm=lambda it=None, **k: it)
stub('transformers', AutoTokenizer=Unavailable, AutoModel=Unavailable)
stub('decord', VideoReader=Unavailable, cpu=lambda i: None)
stub('cv2', cvtColor=Unavailable, COLOR_RGBA2RGB=None)
stub('imageio', get_reader=Unavailable)
stub('utils')
stub('utils.preprocess', build_transform=build_transform, dynamic_preprocess=Unavailable)


def load(name, file):
    spec = importlib.util.spec_from_file_location(name, os.path.join(ref, file))
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


textvqa_eval = load('textvqa_eval', 'internvl_textvqa_eval.py')
infovqa_eval = load('infographicsvqa_eval', 'internvl_infographicsvqa_eval.py')
evaluate_vqa = load('evaluate_vqa', 'evaluate_vqa.py')
evaluate_mvbench = load('evaluate_mvbench', 'evaluate_mvbench.py')


def score(metric, entries):
    if metric == 'relaxed_accuracy':
        items = [evaluate_vqa.evaluate_relaxed_accuracy([dict(e)]) for e in entries]
        return evaluate_vqa.evaluate_relaxed_accuracy([dict(e) for e in entries]), items, None
    if metric == 'accuracy':
        items = [evaluate_vqa.evaluate_exact_match_accuracy([dict(e)]) for e in entries]
        return evaluate_vqa.evaluate_exact_match_accuracy([dict(e) for e in entries]), items, None
    if metric == 'vqa_score':
        ev = textvqa_eval.TextVQAAccuracyEvaluator()
        preds = [{'pred_answer': e['answer'], 'gt_answers': e['annotation']} for e in entries]
        return ev.eval_pred_list(preds), [ev.eval_pred_list([p]) for p in preds], None
    if metric == 'anls':
        # the official script reads a ground-truth file and a submission file
        gt = {'dataset_name': 'generated', 'data': []}
        sub = []
        for i, e in enumerate(entries):
            ann = e['annotation'] if isinstance(e['annotation'], list) else [e['annotation']]
            gt['data'].append({'questionId': i, 'question': '', 'answers': ann})
            sub.append({'questionId': i, 'answer': e['answer']})
        with tempfile.TemporaryDirectory() as d:
            gf, sf = os.path.join(d, 'gt.json'), os.path.join(d, 'sub.json')
            json.dump(gt, open(gf, 'w'))
            json.dump(sub, open(sf, 'w'))
            infovqa_eval.validate_data(gf, sf)
            res = infovqa_eval.evaluate_method(gf, sf, Namespace(answer_types=False, anls_threshold=0.5))
        return res['result']['score'], [res['per_sample_result'][str(i)]['score'] for i in range(len(entries))], None
    if metric == 'mvbench':
        # evaluate_chat_model's tally around check_ans
        correct, total, acc = 0, 0, {}
        items = []
        for e in entries:
            ok = evaluate_mvbench.check_ans(e['answer'], e['annotation'])
            items.append(1 if ok else 0)
            acc.setdefault(e.get('subtask', ''), [0, 0])
            acc[e.get('subtask', '')][1] += 1
            total += 1
            if ok:
                acc[e.get('subtask', '')][0] += 1
                correct += 1
        return correct / total * 100, items, {k: v[0] / v[1] * 100 for k, v in acc.items()}
    raise ValueError(metric)


def local_strings(file):
    """The string constants evaluate_chat_model assigns (its prompts are local variables)."""
    tree = ast.parse(open(os.path.join(ref, file)).read())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == 'evaluate_chat_model')
    return {n.targets[0].id: n.value.value for n in ast.walk(fn)
            if isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Name)
            and isinstance(n.value, ast.Constant) and isinstance(n.value.value, str)}


def vqa_items(root, datasets):
    os.chdir(root)
    p = local_strings('evaluate_vqa.py')
    out = {}
    for ds in datasets:
        coll = evaluate_vqa.ds_collections[ds]
        # evaluate_chat_model's choice among its prompts (no vizwiz here)
        prompt = p['ai2d_prompt'] if 'ai2d' in ds else p['infovqa_prompt'] if 'infographicsvqa' in ds else p['base_prompt']
        dataset = evaluate_vqa.VQADataset(train=coll['train'], test=coll['test'], prompt=prompt, few_shot=0)
        out[ds] = {'max_new_tokens': coll['max_new_tokens'], 'metric': coll['metric'], 'items': []}
        for i in range(len(dataset)):
            item = dataset[i]
            line = json.loads(dataset.test[i])
            out[ds]['items'].append({'question': item['question'], 'question_id': item['question_id'],
                                     'annotation': item['annotation'], 'image': line['image']})
    return out


def mvbench_items(root, num_segments):
    os.chdir(root)
    from PIL import Image
    p = local_strings('evaluate_mvbench.py')
    ds = evaluate_mvbench.MVBenchDataset(evaluate_mvbench.data_dir, evaluate_mvbench.data_list,
                                         prompt=p['prompt'], question_prompt=p['question_prompt'], num_segments=num_segments)
    seen = {}

    def read_video(path, bound=None):
        seen['video'], seen['bound'] = path, bound
        return [Image.new('RGB', (4, 4))] * num_segments

    opened = []
    real_open = Image.open
    evaluate_mvbench.Image = types.SimpleNamespace(open=lambda p: opened.append(p) or real_open(p), fromarray=Image.fromarray)
    ds.decord_method['video'] = read_video
    out = []
    for i in range(len(ds)):
        seen.clear()
        opened.clear()
        item = ds[i]
        out.append({'question': item['question'], 'answer': item['answer'], 'task_type': item['task_type'],
                    'video': seen.get('video'), 'bound': seen.get('bound'), 'frames': list(opened),
                    'num_patches_list': item['num_patches_list']})
    return out


req = json.load(sys.stdin)
if req['op'] == 'scores':
    answers = {}
    for label, case in req['cases'].items():
        s, items, sub = score(case['metric'], case['entries'])
        answers[label] = {'score': s, 'items': items, 'subtasks': sub}
    json.dump(answers, sys.stdout)
elif req['op'] == 'vqa_items':
    json.dump(vqa_items(req['root'], req['datasets']), sys.stdout)
elif req['op'] == 'mvbench_items':
    json.dump(mvbench_items(req['root'], req['num_segments']), sys.stdout)
