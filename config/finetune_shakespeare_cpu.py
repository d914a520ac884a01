# finetune GPT-2 (124M) on tiny Shakespeare (BPE) on a laptop CPU: 2 GB of weights, gradients and AdamW state
# $ python data/shakespeare/prepare.py && python train.py config/finetune_shakespeare_cpu.py
# your own text instead: prepare it with GPT-2 BPE (data/text/prepare.py's default) and add --dataset=mybook
# offline: --init_from=/path/to/a/local/hugging-face/gpt2/directory
out_dir = 'out-shakespeare-cpu'
eval_interval = 5
eval_iters = 10
log_interval = 1
always_save_checkpoint = False  # only save when val improves

dataset = 'shakespeare'
init_from = 'gpt2'  # the smallest GPT-2; config/finetune_shakespeare.py takes GPT-2 XL on a GPU

# 4 sequences * 256 tokens * 4 accumulation = 4,096 tokens per step: 20 steps see ~1/4 of shakespeare's
# 301,966 training tokens
batch_size = 4
block_size = 256
gradient_accumulation_steps = 4
max_iters = 20

# finetune at a constant small learning rate
learning_rate = 3e-5
decay_lr = False

device = 'cpu'
compile = False
