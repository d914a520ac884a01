# your own text on a laptop CPU: a small GPT-2-vocabulary model, minutes per thousand steps
# $ python data/text/prepare.py --input=mybook.txt --out_dir=data/mybook
# $ python train.py config/train_text_cpu.py --dataset=mybook
# (train.py's defaults are GPT-2 124M: block 1024, 600k steps, compiled: a GPU's recipe, not a laptop's)
out_dir = 'out-text-cpu'
eval_interval = 250
eval_iters = 20
log_interval = 10
always_save_checkpoint = False

dataset = 'mybook'  # the name given to data/text/prepare.py's --out_dir=data/<name>
gradient_accumulation_steps = 1
batch_size = 12
block_size = 128

# the quickstart's shape; with GPT-2's 50,257-token vocabulary the (tied) embedding is most of its ~7M parameters
n_layer = 4
n_head = 4
n_embd = 128
dropout = 0.1  # a book is small: a little dropout against memorizing it

learning_rate = 1e-3
max_iters = 3000
lr_decay_iters = 3000
min_lr = 1e-4
beta2 = 0.99
warmup_iters = 100

device = 'cpu'  # --device=mps on Apple Silicon, --device=cuda on a GPU
compile = False
