# sorting 6 digits from {0, 1, 2} (minGPT's sort demo), sized for a 2-core CPU
# $ python data/sort/prepare.py && python train.py config/train_sort.py && python data/sort/evaluate.py
out_dir = 'out-sort'
eval_interval = 250
eval_iters = 20
log_interval = 50
always_save_checkpoint = True  # keep the final model: evaluate.py scores it

dataset = 'sort'
gradient_accumulation_steps = 1
batch_size = 64
# a line is 14 characters. Keep windows short: they start anywhere, so each position must learn the task
# (64 learns far slower)
block_size = 16

n_layer = 3
n_head = 4
n_embd = 64
dropout = 0.0

learning_rate = 3e-3
max_iters = 1500
lr_decay_iters = 1500
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'
dtype = 'float32'
compile = False
