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

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0

# three times nanoGPT's 1e-3 "macbook" learning rate: this small model takes it, and in 1500 steps reaches
# val 1.844 (seed 2: 1.840), against 1.887 with 2e-3 and 1.899 with 1e-3 in 2000 steps (4e-3: 1.848)
learning_rate = 3e-3
max_iters = 1500
lr_decay_iters = 1500
min_lr = 3e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
compile = False
