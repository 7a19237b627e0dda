"""Reference for test/tokenizer.test.ts, run with Debian's /usr/bin/python3 (python3-sentencepiece).

Usage: tokenizer_ref.py REQUEST.json. The request holds {"model": path, "texts": [...],
"decode": [[ids...], ...], "added": [token strings], "chat_texts": [...]}; prints JSON with
- "ids": sp.encode(text) for each text,
- "decoded": sp.decode(ids) for each encoding, and "decode": sp.decode for each id list given,
- "chat_ids": what the slow InternLM2Tokenizer does with add_bos_token: [bos] + for each chunk of
  the text split on the added token strings (leftmost, then longest), sp.encode(chunk) or the
  token itself (returned as a string, mapped to its id by the test).
"""
import json
import re
import sys

import sentencepiece as spm

req = json.load(open(sys.argv[1], encoding="utf-8"))
sp = spm.SentencePieceProcessor(model_file=req["model"])

ids = [sp.encode(t) for t in req["texts"]]
out = {
    "ids": ids,
    "decoded": [sp.decode(x) for x in ids],
    "decode": [sp.decode(x) for x in req.get("decode", [])],
}

added = sorted(req.get("added", []), key=len, reverse=True)
if added:
    splitter = re.compile("(" + "|".join(re.escape(a) for a in added) + ")")
    chat = []
    for text in req.get("chat_texts", []):
        row = [sp.bos_id()]
        for chunk in splitter.split(text):
            if chunk in added:
                row.append(chunk)
            elif chunk:
                row.extend(sp.encode(chunk))
        chat.append(row)
    out["chat_ids"] = chat

json.dump(out, sys.stdout, ensure_ascii=True)
