"""
Your own text as a training set:

    python data/text/prepare.py --input=mybook.txt --out_dir=data/mybook
    python data/text/prepare.py --input=mybook.txt --out_dir=data/mybook --tokenizer=bpe --vocab_size=4096
    python train.py --dataset=mybook ...

--input is a file, a folder (every *.txt under it, sorted by path) or a glob ('notes/**/*.md').
Each file is one document. The last --val_fraction of the characters is the val split. Three tokenizers:
- gpt2 (default): GPT-2's BPE; documents are separated by the end-of-text token 50256.
- bpe: a byte-level BPE of --vocab_size tokens trained on the train split only (the val split stays text it
  never saw), saved as tokenizer.json beside the .bin files; documents are separated by its end-of-text
  token (id 0). Any text encodes (every byte is a token) and decodes back exactly.
- char: a character vocabulary (meta.pkl; no end-of-text token, so documents simply follow one another).
Files must be UTF-8; --errors=replace reads undecodable bytes as U+FFFD instead of stopping.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import UserError, configure
from data.common import (UINT16_VOCAB_LIMIT, check_out_dir, encode_documents, find_files, read_text, save_dataset,
                         split_documents)
from tokenizer import Tokenizer, train_bpe

input = ''          # file, folder or glob of UTF-8 text (required)
tokenizer = 'gpt2'  # 'gpt2' (BPE, 50,257 tokens), 'bpe' (trained on this text) or 'char' (one token per character)
vocab_size = 4096   # tokenizer='bpe': its tokens, end-of-text and the 256 bytes included (257 to 65,535)
val_fraction = 0.1  # the last 10% of the text is the val split
out_dir = _HERE      # e.g. data/mybook, then train with --dataset=mybook
errors = 'strict'   # 'strict': stop at bytes that are not UTF-8; 'replace': read them as U+FFFD; 'ignore'
configure(globals())

if not input:
    raise UserError("give the text to prepare: --input=FILE, FOLDER or GLOB (e.g. --input=mybook.txt)")
if tokenizer not in ('gpt2', 'bpe', 'char'):
    raise UserError(f"--tokenizer={tokenizer!r} must be 'gpt2', 'bpe' or 'char'")
if tokenizer == 'bpe' and vocab_size >= UINT16_VOCAB_LIMIT:
    raise UserError(f"--vocab_size={vocab_size:,} does not fit the uint16 .bin files: a trained BPE can have at "
                    f"most {UINT16_VOCAB_LIMIT - 1:,} tokens")

files = find_files(input, exts=('.txt',))
docs = [read_text(path, errors) for path in files]
docs = [doc for doc in docs if doc]  # an empty file is no document
if not docs:
    raise UserError(f"{input}: no text to prepare (all {len(files)} file(s) are empty)")
print(f"{len(docs):,} document(s), {sum(map(len, docs)):,} characters from {input}")
check_out_dir(out_dir)  # before the tokenizing, which is the slow part

train_docs, val_docs = split_documents(docs, val_fraction)
if tokenizer == 'gpt2':
    tok = Tokenizer.gpt2()
elif tokenizer == 'char':
    tok = Tokenizer.char_from_text(''.join(docs))
else:
    tok = train_bpe(train_docs, vocab_size)  # the train split only: val measures text the tokenizer never saw
print(f"tokenizer: {tok}")
train_ids, val_ids = encode_documents(tok, train_docs), encode_documents(tok, val_docs)
save_dataset(out_dir, train_ids, val_ids, meta=tok.meta, tokenizer_json=tok.json)
