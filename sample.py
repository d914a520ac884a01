"""
Sample from a trained model (out_dir/ckpt.pt) or from OpenAI's GPT-2, streaming text as it is made.

$ python sample.py --out_dir=out-shakespeare-char-cpu
$ python sample.py --init_from=gpt2-xl --start="What is the answer to life?" --num_samples=3
$ python sample.py --init_from=/path/to/hf/gpt2 --start=FILE:prompt.txt --temperature=0
"""
import os
import sys

import torch

import hardware
from checkpoint import load_model, tokenizer_for, weights_are_finite
from configurator import UserError, configure

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume' (from out_dir), another out_dir, a GPT-2 name ('gpt2-xl'), or a local HF directory
out_dir = 'out'  # ignored if init_from is not 'resume'
start = "\n"  # the prompt; "FILE:prompt.txt" reads it from a file; "<|endoftext|>" starts a fresh GPT-2 document
num_samples = 10  # number of samples to draw
max_new_tokens = 500  # number of tokens generated in each sample
temperature = 0.8  # 1.0 = no change, < 1.0 = less random, > 1.0 = more random; 0 = greedy
top_k = 200  # keep only the top_k most likely tokens (0 = no limit)
top_p = 1.0  # keep the most likely tokens whose probabilities add up to top_p (1.0 = no limit)
seed = 1337
device = 'auto'  # 'auto', 'cpu', 'cuda', 'cuda:0', 'mps'
dtype = 'auto'  # 'float32', 'bfloat16', 'float16' or 'auto'
use_cache = True  # the KV cache; False recomputes every position at every step (the same text, slower)
compile = False  # torch.compile the forward pass that generation runs (a prefill graph and a one-token step graph)
# -----------------------------------------------------------------------------
configure(globals())
if num_samples < 1 or max_new_tokens < 1:
    raise UserError("num_samples and max_new_tokens must be at least 1")
if temperature < 0 or top_k < 0 or not 0.0 < top_p <= 1.0:
    raise UserError("temperature and top_k must be >= 0 and top_p in (0, 1]")

# the prompt, read before the model loads: a wrong path fails at once
if start.startswith('FILE:'):
    prompt_path = start[5:]
    if not os.path.isfile(prompt_path):  # open() would raise IsADirectoryError for a folder, with a traceback
        what = 'is a directory' if os.path.isdir(prompt_path) else 'not found'
        raise UserError(f"--start=FILE:{prompt_path}: {what}; give a text file to read the prompt from, "
                        f"or the prompt itself with --start='...'")
    with open(prompt_path, 'rb') as f:
        data = f.read()
    try:
        start = data.decode('utf-8')
    except UnicodeDecodeError as e:
        raise UserError(f"--start=FILE:{prompt_path} is not UTF-8 text: byte 0x{data[e.start]:02x} at byte offset "
                        f"{e.start} cannot be decoded; save the prompt as UTF-8") from None

torch.manual_seed(seed)
hw = hardware.setup(device, dtype)
device, ctx = hw.device, hw.ctx

# model and the vocabulary it was trained with (the dataset's meta.pkl, or GPT-2 BPE)
try:
    model, checkpoint = load_model(init_from, out_dir)
except UserError as e:
    if init_from != 'resume':
        raise
    raise UserError(f"{e}; for example, the CPU quickstart: `python data/shakespeare_char/prepare.py && "
                    f"python train.py config/train_shakespeare_char_cpu.py`, then "
                    f"`python sample.py --out_dir=out-shakespeare-char-cpu`") from None
if not weights_are_finite(model):
    raise UserError(f"the weights of {init_from if init_from != 'resume' else out_dir + '/ckpt.pt'} are not finite "
                    f"(NaN or inf: it was saved after training diverged), so they cannot be sampled; retrain or "
                    f"resume from a good checkpoint with a lower learning_rate")
model.eval().to(device)
if compile:
    # in place, so that generate_stream's own calls of the model run compiled: torch.compile(model) returns a
    # wrapper whose generate_stream would still call the plain forward
    model.compile()
tokenizer = tokenizer_for(checkpoint, init_from)

# the prompt's tokens
if start == '<|endoftext|>' and tokenizer.eot_token is not None:
    start_ids = [tokenizer.eot_token]
else:
    start_ids = tokenizer.encode(start)
    if tokenizer.unknown_chars(start):  # encoded as the exported tokenizer encodes them, and said so
        print(f"note: {', '.join(map(repr, tokenizer.unknown_chars(start)))} of the prompt not in the model's "
              f"{tokenizer.vocab_size}-character vocabulary, read as {tokenizer.unknown_char!r}", file=sys.stderr)
if not start_ids:
    raise UserError("the prompt is empty: pass some text with --start=... (GPT-2 models also take "
                    "--start='<|endoftext|>')")
block_size = model.config.block_size
if len(start_ids) > block_size and not model.config.rotary:  # a rotary model's window slides over any prompt
    raise UserError(f"the prompt is {len(start_ids)} tokens but the model's context is {block_size}: "
                    f"shorten it (the model could only see its last {block_size} tokens)")
x = torch.tensor(start_ids, dtype=torch.long, device=device)[None, :]  # (1, T)


def stream_sample():
    """Generate one sample, writing text to stdout as soon as it decodes cleanly. A GPT-2 token can end
    inside a multi-byte UTF-8 character; such a tail decodes as U+FFFD and waits for the next token."""
    ids, shown = list(start_ids), len(tokenizer.decode(start_ids))
    sys.stdout.write(start)
    for next_id in model.generate_stream(x, max_new_tokens, temperature=temperature, top_k=top_k or None,
                                         top_p=top_p, use_cache=use_cache, vocab_size=tokenizer.vocab_size):
        ids.append(next_id.item())
        text = tokenizer.decode(ids)
        if not text.endswith('\ufffd'):
            sys.stdout.write(text[shown:])
            sys.stdout.flush()
            shown = len(text)
    sys.stdout.write(tokenizer.decode(ids)[shown:] + '\n')


with torch.no_grad(), ctx:
    for k in range(num_samples):
        stream_sample()
        print('---------------')
