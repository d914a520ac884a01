"""
Draw train/val loss curves from the log.jsonl of one or more runs (one line per eval, written by
train.py), for the README, and beside them the HellaSwag acc_norm of runs that scored it
(train.py --eval_hellaswag=True). Every figure in assets/ is made by this script from a real run:

$ python assets/plot_losses.py --logs=out-shakespeare-char-cpu/log.jsonl --out=assets/quickstart_loss.png
$ python assets/plot_losses.py --logs=out-a/log.jsonl,out-b/log.jsonl --labels=bf16,fp32 --x=elapsed_s
"""
import json
import os
import sys

import matplotlib
matplotlib.use('Agg')  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repo root
from configurator import UserError, configure  # noqa: E402

# -----------------------------------------------------------------------------
logs = 'out-shakespeare-char-cpu/log.jsonl'  # comma-separated log.jsonl paths
labels = ''  # comma-separated legend labels (default: each log's folder name)
out = 'assets/quickstart_loss.png'
title = 'shakespeare_char, CPU quickstart'
x = 'iter'  # 'iter' or 'elapsed_s' (wall seconds since the process started)
target = 0.0  # draw a horizontal line at this val loss (0 = none)
# -----------------------------------------------------------------------------
configure(globals())
if x not in ('iter', 'elapsed_s'):
    raise UserError(f"x must be 'iter' or 'elapsed_s', got '{x}'")


def read_log(path):
    if not os.path.isfile(path):
        raise UserError(f"no log at {path}: train.py writes out_dir/log.jsonl during a run")
    with open(path) as f:
        records = [json.loads(line) for line in f if line.strip()]
    if not records:
        raise UserError(f"{path} has no evals yet")
    return records


paths = logs.split(',')
names = labels.split(',') if labels else [os.path.basename(os.path.dirname(os.path.abspath(p))) for p in paths]
if len(names) != len(paths):
    raise UserError(f"{len(paths)} logs but {len(names)} labels")
runs = [read_log(path) for path in paths]
scored = any('hellaswag_acc_norm' in r for records in runs for r in records)
fig, axes = plt.subplots(1, 2 if scored else 1, figsize=(12 if scored else 7, 4.2), squeeze=False)
ax = axes[0, 0]
for records, name, color in zip(runs, names, plt.rcParams['axes.prop_cycle'].by_key()['color']):
    xs = [r[x] for r in records]
    points = [(r[x], r['hellaswag_acc_norm']) for r in records if 'hellaswag_acc_norm' in r]
    if points:
        axes[0, 1].plot(*zip(*points), '-', color=color, label=name)
    ax.plot(xs, [r['train_loss'] for r in records], '--', color=color, label=f'{name} train')
    ax.plot(xs, [r['val_loss'] for r in records], '-', color=color, label=f'{name} val')
    last = records[-1]
    ax.annotate(f"{last['val_loss']:.3f}", (xs[-1], last['val_loss']), textcoords='offset points',
                xytext=(4, 4), color=color, fontsize=8)
if target:
    ax.axhline(target, color='gray', lw=0.8, ls=':', label=f'val {target}')
ax.set_xlabel('iteration' if x == 'iter' else 'wall seconds since start')
ax.set_ylabel('loss (nats per token)')
ax.set_title(title)
ax.grid(alpha=0.3)
ax.legend(fontsize=8)
if scored:
    axes[0, 1].set_xlabel(ax.get_xlabel())
    axes[0, 1].set_ylabel('HellaSwag acc_norm')
    axes[0, 1].set_title('multiple choice (eval_hellaswag)')
    axes[0, 1].grid(alpha=0.3)
    axes[0, 1].legend(fontsize=8)
fig.tight_layout()
os.makedirs(os.path.dirname(out) or '.', exist_ok=True)
fig.savefig(out, dpi=120)
print(f"wrote {out}")
