"""
Exact-match accuracy of a model trained on data/sort: every held-out list (val.bin) and the train lists
(train.bin), completed greedily and compared digit for digit.

    python data/sort/evaluate.py --out_dir=out-sort
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import configure
from data.tasks import evaluate

out_dir = 'out-sort'  # the checkpoint to evaluate (out_dir/ckpt.pt)
max_problems = 10_000  # score the first max_problems of each split (0 = all)
batch_size = 1000  # problems completed together
show = 5  # wrong answers to print per split
device = 'auto'  # 'auto', 'cpu', 'cuda', 'mps'
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto' (bf16 on CPU): these models are tiny, keep full precision
choices = ''  # also write the held-out problems here as 4-way multiple choice, for eval_tasks.py
configure(globals())


def describe(question, answer, got):
    return f"{question}{answer}, model says {got or '(nothing)'}"


evaluate('sort', out_dir, describe, max_problems, batch_size, show, device, dtype, choices=choices)
