#!/usr/bin/env python3
"""Makes tests/fixtures/tokenizer_hf.jsonl: token ids from the Hugging Face
`tokenizers` library (the reference implementation) for strings written by
`node tools/tokenizer_diff.mjs gen-hf DIR`, which include the characters where
the JS reference deviates (U+0085, U+FEFF). Run where `tokenizers` is
installed (the GPU machine):
    python3 tools/tokenizer_hf_fixture.py TOKENIZER.json DIR/strings.jsonl OUT.jsonl
Each output line: {"text": "...", "ids": [...]}.
"""
import json
import sys

import tokenizers
from tokenizers import Tokenizer

tok_path, strings_path, out_path = sys.argv[1:4]
tok = Tokenizer.from_file(tok_path)
texts = [json.loads(line) for line in open(strings_path, encoding="utf-8")]
# Hand-picked cases on top of the generated ones.
texts += ["a\ufeff b", "x\u0085y", " \u0085'", "x  \ufeff\n", "\ufeff\ufeff\ufeff-A\u030a", "it'\u017f",
          "don'\u212a", "\u00a0\u00a0x", "a\u180eb", "a\u200bb", "\u2028\u2029", "\r\n\u0085\r\n"]
with open(out_path, "w", encoding="utf-8") as f:
    for t, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=False)):
        f.write(json.dumps({"text": t, "ids": enc.ids}, ensure_ascii=True) + "\n")
print(f"tokenizers {tokenizers.__version__}: wrote {len(texts)} cases to {out_path}")
