# the CPU quickstart's data at nanoGPT's CPU model size (4 x 128) with the modern recipe, sized for the shortest
# wall time to the quickstart's val loss (< 1.87): batches of 24 amortise Muon's per-step iteration, which at
# 12 x 64 tokens costs about as much as the step itself; 250 of them reach 1.848 where
# config/train_shakespeare_char_cpu_modern.py's 600 of 12 (the best loss) pass 1.87 near step 450.
# $ python train.py config/train_shakespeare_char_cpu_fast.py
out_dir = 'out-shakespeare-char-cpu-fast'
eval_interval = 250  # the evals at steps 0 and 250: one more would cost ~4% of the wall time
eval_iters = 20
log_interval = 10
always_save_checkpoint = False

dataset = 'shakespeare_char'
gradient_accumulation_steps = 1
batch_size = 24
block_size = 64

n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.0
bias = False

rotary = True
qk_norm = True
rmsnorm = True
relu_squared = True
tie_embeddings = False
logit_softcap = 15.0
zero_init_proj = True
embedding_norm = True

optimizer = 'muon'
muon_lr = 0.02
learning_rate = 6e-3
max_iters = 250
lr_decay_iters = 250
min_lr = 6e-4
beta2 = 0.99
warmup_iters = 50

device = 'cpu'
compile = False
