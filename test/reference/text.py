"""Prompt template (internlm2-chat) and tokenization (SentencePiece + InternLM2 special/added tokens).

Special and added token strings are matched first and map to their fixed ids; the text between them
goes through the checkpoint's tokenizer.model; BOS (1) is prepended (pvc-architecture.md sections 7-8).
"""
import json
import os
import re

import sentencepiece as spm

SYSTEM_MESSAGE = ('你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL, '
                  '是一个有用无害的人工智能助手。')
BOS_ID = 1

# Chat specials and InternVL added tokens (used when the checkpoint has no tokenizer_config/added_tokens).
SPECIAL_TOKENS = {
    '<|plugin|>': 92538, '<|interpreter|>': 92539, '<|action_end|>': 92540, '<|action_start|>': 92541,
    '<|im_end|>': 92542, '<|im_start|>': 92543,
    '<img>': 92544, '</img>': 92545, '<IMG_CONTEXT>': 92546, '<quad>': 92547, '</quad>': 92548,
    '<ref>': 92549, '</ref>': 92550, '<box>': 92551, '</box>': 92552,
}


def chat_prompt(question, system=SYSTEM_MESSAGE):
    return f'<|im_start|>system\n{system}<|im_end|><|im_start|>user\n{question}<|im_end|><|im_start|>assistant\n'


def expand_images(question, context_counts):
    """Replaces each '<image>' in order by <img><IMG_CONTEXT>*M</img> (M = that image's vision rows)."""
    parts = question.split('<image>')
    if len(parts) - 1 != len(context_counts):
        raise ValueError(f'{len(parts) - 1} <image> placeholders for {len(context_counts)} images')
    out = parts[0]
    for m, rest in zip(context_counts, parts[1:]):
        out += '<img>' + '<IMG_CONTEXT>' * m + '</img>' + rest
    return out


class Tokenizer:
    def __init__(self, model_dir):
        path = os.path.join(model_dir, 'tokenizer.model')
        if not os.path.exists(path):
            raise FileNotFoundError(f'{path} not found: the dumps tokenize with the checkpoint tokenizer')
        self.sp = spm.SentencePieceProcessor(model_file=path)
        self.special = dict(SPECIAL_TOKENS)
        added = os.path.join(model_dir, 'added_tokens.json')
        if os.path.exists(added):
            with open(added) as f:
                self.special.update(json.load(f))
        config = os.path.join(model_dir, 'tokenizer_config.json')
        if os.path.exists(config):
            with open(config) as f:
                for sid, tok in json.load(f).get('added_tokens_decoder', {}).items():
                    self.special[tok['content']] = int(sid)
        names = sorted(self.special, key=len, reverse=True)  # longest match first
        self.split_re = re.compile('(' + '|'.join(re.escape(n) for n in names) + ')')

    def encode(self, text):
        ids = [BOS_ID]
        for chunk in self.split_re.split(text):
            if chunk in self.special:
                ids.append(self.special[chunk])
            elif chunk:
                ids.extend(self.sp.encode(chunk))
        return ids
