"""
Exact-match accuracy of a model trained on data/adder: every held-out sum (val.bin) and the train sums
(train.bin), completed greedily and compared digit for digit.

    python data/adder/evaluate.py --out_dir=out-adder
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import configure
from data.tasks import evaluate

out_dir = 'out-adder'  # the checkpoint to evaluate (out_dir/ckpt.pt)
max_problems = 10_000  # score the first max_problems of each split (0 = all; 3-digit train has 900,000)
batch_size = 1000  # problems completed together
show = 5  # wrong answers to print per split
device = 'auto'  # 'auto', 'cpu', 'cuda', 'mps'
dtype = 'float32'  # 'float32', 'bfloat16', 'float16' or 'auto' (bf16 on CPU): these models are tiny, keep full precision
choices = ''  # also write the held-out problems here as 4-way multiple choice, for eval_tasks.py
configure(globals())


def describe(question, answer, got):
    """'57+68=125, model says 135': the answers read back the right way round (they are stored reversed)."""
    return f"{question}{answer[::-1]}, model says {got[::-1] or '(nothing)'}"


evaluate('adder', out_dir, describe, max_problems, batch_size, show, device, dtype, choices=choices)
