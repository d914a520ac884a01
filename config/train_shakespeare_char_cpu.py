# the CPU quickstart: a small character-level GPT on tiny Shakespeare, sized for a 2-core laptop
# $ python data/shakespeare_char/prepare.py && python train.py config/train_shakespeare_char_cpu.py
out_dir = 'out-shakespeare-char-cpu'
eval_interval = 250
eval_iters = 20
log_interval = 10
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 12
block_size = 64

# two layers, not nanoGPT's four: at this budget a shallower model reaches the loss sooner (BENCHMARKS.md: 1-4
# layers, widths 96-160, batches 8-16); two is the fewest whose attention heads can compose (an induction head)
n_layer = 2
n_head = 4
n_embd = 128
dropout = 0.0

# six times nanoGPT's 1e-3 "macbook" learning rate: this small model takes it, and in 1500 steps reaches
# val 1.815-1.847 over seeds 1337, 1, 2, 3 (float32) and 1.825-1.844 (bf16); 5e-3 ends as low, but one seed at 1.865
learning_rate = 6e-3
max_iters = 1500
lr_decay_iters = 1500
min_lr = 6e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
compile = False
