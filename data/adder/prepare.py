"""
Every sum of two n-digit numbers as a line of characters, minGPT's adder in this repo's data format:

    python data/adder/prepare.py                  # 2 digits: 10,000 problems -> data/adder/
    python data/adder/prepare.py --ndigit=3 --out_dir=data/adder3   # 1,000,000 problems; train with --dataset=adder3

a + b = c is written '{a}+{b}={c reversed}' with a and b zero-padded to ndigit digits and c to ndigit + 1:
    12 + 34 = 46   ->  '12+34=640'
    57 + 68 = 125  ->  '57+68=521'
c is reversed (as in minGPT) so the model writes the ones digit first, the way the carry flows: each digit then
depends only on digits of a and b and on the digit it has just written. Only c and the line end are trained on
(train_mask.bin / val_mask.bin; see data/tasks.py). A fixed, hash-ordered val_fraction of the problems is held out
and never appears in train.bin.
"""
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import UserError, configure
from data.tasks import save_task

ndigit = 2  # digits of each operand: 10 ** (2 * ndigit) problems
val_fraction = 0.1  # the share of problems held out (val.bin): 1,000 of 10,000 for ndigit=2
out_dir = _HERE
configure(globals())

if not 1 <= ndigit <= 4:
    raise UserError(f"--ndigit={ndigit} must be 1 to 4 (10 ** (2 * ndigit) problems: 4 digits is already 10^8)")


def problem(a, b):
    return f"{a:0{ndigit}d}+{b:0{ndigit}d}=", f"{a + b:0{ndigit + 1}d}"[::-1]


n = 10 ** ndigit
save_task(out_dir, 'adder', [problem(a, b) for a in range(n) for b in range(n)], val_fraction, ndigit=ndigit)
