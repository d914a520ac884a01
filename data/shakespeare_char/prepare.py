"""
Tiny Shakespeare at the character level, as nanoGPT's shakespeare_char:

    python data/shakespeare_char/prepare.py        # -> train.bin, val.bin, meta.pkl next to this file

The text (1,115,394 characters) ships with the repo as input.txt, so no network is needed; if it is
missing it is downloaded from its original URL. The vocabulary is every distinct character (65),
the first 90% of the text is train (1,003,854 tokens), the last 10% val (111,540).
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import configure
from data.common import encode_documents, read_or_download, save_dataset, split_documents
from tokenizer import Tokenizer

out_dir = _HERE  # where train.bin / val.bin / meta.pkl go
configure(globals())

INPUT_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
text = read_or_download(os.path.join(_HERE, 'input.txt'), INPUT_URL)
print(f"length of dataset in characters: {len(text):,}")

tok = Tokenizer.char_from_text(text)  # vocabulary from the whole text, ids in sorted character order
print(f"all the unique characters: {''.join(tok.meta['itos'].values())!r}")
print(f"vocab size: {tok.vocab_size:,}")

train_docs, val_docs = split_documents([text], val_fraction=0.1)
save_dataset(out_dir, encode_documents(tok, train_docs), encode_documents(tok, val_docs), meta=tok.meta)
