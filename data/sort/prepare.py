"""
Every list of 6 digits from {0, 1, 2} and its sorted form, minGPT's sort in this repo's data format:

    python data/sort/prepare.py          # 3^6 = 729 lists -> data/sort/

Each list is one line, '{list}={sorted list}':  '201120=011122'. Only the sorted list and the line end are
trained on (train_mask.bin / val_mask.bin; see data/tasks.py). A fixed, hash-ordered val_fraction of the lists
(25%, as minGPT) is held out and never appears in train.bin.
"""
import itertools
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says
from configurator import UserError, configure
from data.tasks import save_task

length = 6  # digits per list
num_digits = 3  # the digits are 0 .. num_digits - 1: num_digits ** length lists
val_fraction = 0.25  # the share of lists held out (val.bin): 182 of 729
out_dir = _HERE
configure(globals())

if not 1 <= num_digits <= 10 or not 1 <= length <= 12 or num_digits ** length > 10 ** 7:
    raise UserError(f"--num_digits={num_digits} must be 1 to 10 and --length={length} 1 to 12, "
                    f"with num_digits ** length at most 10^7 lists")

lists = [''.join(digits) for digits in itertools.product('0123456789'[:num_digits], repeat=length)]
save_task(out_dir, 'sort', [(f"{s}=", ''.join(sorted(s))) for s in lists], val_fraction,
          length=length, num_digits=num_digits)
