#!/usr/bin/python3
"""Train the small SentencePiece BPE model used by the synthetic (tiny) checkpoints.

Run with Debian's python (it has sentencepiece):
    /usr/bin/python3 scripts/train-tiny-tokenizer.py [OUT]      (default src/weights/tiny-tokenizer.model)

The trainer flags mirror the normalizer/trainer specs stored in InternLM's tokenizer.model
(read from /work/shared/fixtures/tokenizers/internlm-v1.model): BPE, byte_fallback, split_digits,
the 'identity' normalizer with add_dummy_prefix=false and remove_extra_whitespaces=false,
character_coverage 0.9999, unk=0 <unk>, bos=1 <s>, eos=2 </s>, no pad piece.
The corpus is built in and training is single-threaded without sampling, so the output is
byte-for-byte reproducible; the result is committed so that making a checkpoint needs no python.
"""
import os
import sys
import tempfile

import sentencepiece as spm

VOCAB_SIZE = 1024

CORPUS = """\
The quick brown fox jumps over the lazy dog. A picture is worth a thousand words.
Describe this image in detail. What is happening in the video? Please answer the question.
The man is riding a bicycle along the river while the sun sets behind the mountains.
A woman in a red coat walks her dog through the park; children are playing on the grass.
There are three cats sitting on the sofa, and one of them is sleeping next to a blue pillow.
The chart shows that revenue grew by 25% in 2023, compared with 12% in 2022 and 7.5% in 2021.
In the first frame the car is parked; in the second frame it starts moving to the left.
Question: How many people are in the picture? Answer: There are four people in the picture.
Question: What color is the umbrella? Answer: The umbrella is yellow with white stripes.
User: Can you read the text on the sign? Assistant: The sign says "Welcome to Shanghai".
The model processes images as static videos and compresses every frame into 64 tokens.
Large language models generate text one token at a time, attending to all previous tokens.
Vision transformers split an image into patches of 14 by 14 pixels and embed each patch.
The weather today is sunny with a high of 28 degrees and a light breeze from the east.
She opened the window, looked at the busy street below, and smiled at the morning light.
Scientists observed that the temperature of the ocean surface increased over the last decade.
Please list the steps: first, open the box; second, remove the device; third, press the button.
Numbers: 0 1 2 3 4 5 6 7 8 9 10 42 100 256 1024 3.14159 2.71828 -17 1e-5 92553 448x448.
Dates and times: 2024-12-12, 09:30, Monday, January, February, March, April, May, June.
这是一张图片。请详细描述这张图片的内容。
图片中有一只猫坐在窗台上，窗外是蓝色的天空和白色的云。
视频里一个男人正在骑自行车，沿着河边向前行驶。
你是由上海人工智能实验室联合商汤科技开发的书生多模态大模型，英文名叫InternVL，是一个有用无害的人工智能助手。
请回答下面的问题：图中有几个人？答：图中有四个人。
今天天气很好，我们一起去公园散步吧。春天来了，花都开了。
模型把每一帧图像压缩成六十四个视觉标记，然后交给语言模型。
人工智能正在改变我们的生活、学习和工作方式。
def forward(self, x):
    h = self.norm(x)
    return x + self.attn(h)

for i in range(10):
    print(f"step {i}: loss = {loss:.4f}")

import numpy as np
a = np.zeros((3, 4), dtype=np.float32)
b = a.reshape(-1) + 1.0

function add(a, b) {
  return a + b;
}
const tokens = await tokenizer.encode("hello world");
if (tokens.length > 0 && tokens[0] === 1) { console.log('bos'); }

SELECT name, count(*) FROM users WHERE age >= 18 GROUP BY name ORDER BY 2 DESC;
<html><body><p class="note">Hello, world!</p></body></html>
{"id": 7, "name": "pvc", "tags": ["video", "image"], "score": 0.98}
Emoji and symbols: 😀 👍 → ← ★ © ® ™ € £ ¥ ° ± × ÷ µ.
Accents: café, naïve, résumé, Zürich, São Paulo, Ελληνικά, русский текст, 日本語のテキスト, 한국어 문장.
"""


def main() -> None:
    default = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'src', 'weights', 'tiny-tokenizer.model')
    out = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else default)
    # Repeat the corpus with small variations so BPE has enough pair statistics for VOCAB_SIZE.
    lines = [l for l in CORPUS.splitlines() if l.strip()]
    with tempfile.TemporaryDirectory() as tmp:
        # The model stores the input and prefix paths: use fixed relative names for reproducibility.
        os.chdir(tmp)
        corpus_path = 'corpus.txt'
        with open(corpus_path, 'w', encoding='utf-8') as f:
            for rep in range(4):
                for i, line in enumerate(lines):
                    f.write(line if (i + rep) % 3 else line.lower())
                    f.write('\n')
        prefix = 'tiny'
        spm.SentencePieceTrainer.train(
            input=corpus_path,
            model_prefix=prefix,
            model_type='bpe',
            vocab_size=VOCAB_SIZE,
            character_coverage=0.9999,
            byte_fallback=True,
            split_digits=True,
            normalization_rule_name='identity',
            add_dummy_prefix=False,
            remove_extra_whitespaces=False,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
            num_threads=1,
            input_sentence_size=0,
            shuffle_input_sentence=False,
            max_sentence_length=4192,
            minloglevel=2,
        )
        with open(prefix + '.model', 'rb') as f:
            data = f.read()
    with open(out, 'wb') as f:
        f.write(data)
    print(f'wrote {out} ({len(data)} bytes, vocab {VOCAB_SIZE})')


if __name__ == '__main__':
    main()
