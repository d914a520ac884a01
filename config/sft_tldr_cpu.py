# The summarization chain small and offline, stage 1 of 3: a small GPT-2-BPE model trained from scratch on the
# synthetic TL;DR corpus (posts of tiny Shakespeare lines, the reference summary the first line), the loss on the
# summaries only. README: "Summarization from human feedback".
# $ python data/tldr/prepare.py --synthetic=True --block_size=128 --max_completion_tokens=32
# $ python train.py config/sft_tldr_cpu.py
# $ python train.py config/sft_tldr_cpu.py --max_iters=0 --out_dir=out-untrained-tldr-cpu   # the untrained baseline
out_dir = 'out-sft-tldr-cpu'
dataset = 'tldr'
eval_interval = 100
eval_iters = 20
log_interval = 50
always_save_checkpoint = False

n_layer = 3
# the loss drops when the model learns to copy the first line (docs/rlhf.md), at a step that depends on the seed:
# with 4 heads of 16 it came earlier in every seed tried, and the loss was lower at every eval, than with 2 of 32
n_head = 4
n_embd = 64  # lm_head over GPT-2's 50,304 tokens is most of the work: a narrow model buys more steps
block_size = 128  # prepare.py --block_size: every post fits with its summary
bias = False
dropout = 0.0
# copying the first line is a lookup by relative position (val 6.068 at step 200, 6.098 without: one run each)
rotary = True

batch_size = 32
gradient_accumulation_steps = 1
max_iters = 2000  # past the drop in each of 3 seeds tried at this learning rate (docs/rlhf.md)
lr_decay_iters = 2000
warmup_iters = 50
learning_rate = 5e-3  # 1e-2 left one seed of three before the drop at step 2000
min_lr = 5e-4

device = 'cpu'
dtype = 'float32'
compile = False
