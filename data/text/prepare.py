"""
Your own text as a training set:

    python data/text/prepare.py --input=mybook.txt --out_dir=data/mybook
    python train.py --dataset=mybook ...

--input is a file, a folder (every *.txt under it, sorted by path) or a glob ('notes/**/*.md').
Each file is one document; with GPT-2 BPE the documents are separated by the end-of-text token
50256. --tokenizer=char builds a character vocabulary instead (meta.pkl; no end-of-text token, so
documents simply follow one another). The last --val_fraction of the characters is the val split.
Files must be UTF-8; --errors=replace reads undecodable bytes as U+FFFD instead of stopping.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import UserError, configure
from data.common import check_out_dir, encode_documents, find_files, read_text, save_dataset, split_documents
from tokenizer import Tokenizer

input = ''          # file, folder or glob of UTF-8 text (required)
tokenizer = 'gpt2'  # 'gpt2' (BPE, 50,257 tokens) or 'char' (one token per distinct character)
val_fraction = 0.1  # the last 10% of the text is the val split
out_dir = _HERE      # e.g. data/mybook, then train with --dataset=mybook
errors = 'strict'   # 'strict': stop at bytes that are not UTF-8; 'replace': read them as U+FFFD; 'ignore'
configure(globals())

if not input:
    raise UserError("give the text to prepare: --input=FILE, FOLDER or GLOB (e.g. --input=mybook.txt)")
if tokenizer not in ('gpt2', 'char'):
    raise UserError(f"--tokenizer={tokenizer!r} must be 'gpt2' or 'char'")

files = find_files(input, exts=('.txt',))
docs = [read_text(path, errors) for path in files]
docs = [doc for doc in docs if doc]  # an empty file is no document
if not docs:
    raise UserError(f"{input}: no text to prepare (all {len(files)} file(s) are empty)")
print(f"{len(docs):,} document(s), {sum(map(len, docs)):,} characters from {input}")
check_out_dir(out_dir)  # before the tokenizing, which is the slow part

tok = Tokenizer.gpt2() if tokenizer == 'gpt2' else Tokenizer.char_from_text(''.join(docs))
print(f"tokenizer: {tok.name}, vocab size {tok.vocab_size:,}")
train_docs, val_docs = split_documents(docs, val_fraction)
train_ids, val_ids = encode_documents(tok, train_docs), encode_documents(tok, val_docs)
save_dataset(out_dir, train_ids, val_ids, meta=tok.meta)
