"""
Tiny Shakespeare with GPT-2 BPE, as nanoGPT's shakespeare:

    python data/shakespeare/prepare.py             # -> train.bin, val.bin next to this file

Reads the same input.txt as data/shakespeare_char/ (downloaded only if missing). The first 90% of
the characters are train (301,966 tokens), the last 10% val (36,059): 338,025 GPT-2 tokens in all.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import configure
from data.common import encode_documents, read_or_download, save_dataset, split_documents
from tokenizer import Tokenizer

out_dir = _HERE  # where train.bin / val.bin go
configure(globals())

INPUT_URL = 'https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt'
text = read_or_download(os.path.join(os.path.dirname(_HERE), 'shakespeare_char', 'input.txt'), INPUT_URL)
print(f"length of dataset in characters: {len(text):,}")

tok = Tokenizer.gpt2()
train_docs, val_docs = split_documents([text], val_fraction=0.1)  # split the text, then encode each part
save_dataset(out_dir, encode_documents(tok, train_docs), encode_documents(tok, val_docs))
