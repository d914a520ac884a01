"""
Export a model as a Hugging Face directory that transformers (AutoModelForCausalLM, AutoTokenizer, pipeline),
lm-evaluation-harness and other tools load with no custom code: weights, config, generation config, the
tokenizer files (GPT-2 BPE, the model's character vocabulary or the BPE trained on its text) and a model card.

$ python export.py --out_dir=out-shakespeare-char-cpu --hf_dir=hf-shakespeare-char
$ python export.py --init_from=gpt2 --hf_dir=hf-gpt2          # OpenAI's weights, e.g. for an offline copy
$ python export.py --out_dir=out-rlhf-happy-shakespeare --hf_dir=hf-happy --overwrite=True

Then, in Python:
    from transformers import pipeline
    print(pipeline('text-generation', model='hf-shakespeare-char')('ROMEO:', max_new_tokens=100)[0]['generated_text'])

The directory is written under a temporary name beside hf_dir and renamed when complete, so an interrupted
export never leaves a half-written one.
"""
import os
import shutil
import sys
import tempfile

from checkpoint import load_model, tokenizer_for, trained_dataset
from configurator import UserError, configure
from hf import HF_CLASSES, hf_architecture, save_model, save_tokenizer

# -----------------------------------------------------------------------------
init_from = 'resume'  # 'resume' (out_dir/ckpt.pt: train.py's or rlhf.py's), an out_dir, a GPT-2 name, or a local HF dir
out_dir = 'out'  # ignored if init_from is not 'resume'
hf_dir = ''  # where to write the Hugging Face directory
overwrite = False  # replace an existing non-empty hf_dir
# -----------------------------------------------------------------------------
configure(globals())
if not hf_dir:
    raise UserError("say where to write the export: --hf_dir=<a new directory>")
hf_dir = os.path.abspath(hf_dir)
parent = os.path.dirname(hf_dir)
if os.path.exists(hf_dir) and not os.path.isdir(hf_dir):
    raise UserError(f"hf_dir {hf_dir} is a file, not a directory: pick another --hf_dir")
if os.path.isdir(hf_dir) and os.listdir(hf_dir) and not overwrite:
    raise UserError(f"hf_dir {hf_dir} exists and is not empty: pick another --hf_dir, or pass --overwrite=True "
                    f"to replace it")
if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise UserError(f"cannot write into {parent}: it is not a writable directory; pick another --hf_dir")

model, checkpoint = load_model(init_from, out_dir)
source = os.path.join(out_dir if init_from == 'resume' else init_from, 'ckpt.pt') if checkpoint is not None else init_from
if checkpoint is not None and checkpoint.get('scalar_head_role') == 'reward':
    raise UserError(f"{source} is a reward model (train_reward.py): its scalar head has a bias, which "
                    f"transformers' GPT2ForSequenceClassification cannot hold, and its trunk was not trained as a "
                    f"language model; export the policy or the model it was initialised from instead")
architecture = hf_architecture(model.config)  # a switch set transformers has no architecture for stops here
tokenizer = tokenizer_for(checkpoint, init_from)
model_vocab = model.config.vocab_size
if model_vocab not in (tokenizer.vocab_size, tokenizer.model_vocab_size):  # as trained, or padded as train.py pads
    raise UserError(f"the model has {model_vocab} token ids but its {tokenizer.name} tokenizer has "
                    f"{tokenizer.vocab_size}: the export would not round-trip")

TOKENIZER_CARD = {'gpt2': 'GPT-2 BPE (50,257 tokens)', 'char': '{n} characters, one token each',
                  'bpe': 'a byte-level BPE of {n:,} tokens trained on the training text'}


def model_card():
    c = model.config
    name = 'GPT-2' if architecture == 'gpt2' else HF_CLASSES[architecture][0].removesuffix('ForCausalLM')
    switches = [k for k in ('rotary', 'qk_norm', 'rmsnorm', 'relu_squared', 'embedding_norm') if getattr(c, k)]
    switches += [f'logit_softcap={c.logit_softcap:g}'] if c.logit_softcap else []
    lines = ['---', 'library_name: transformers', 'pipeline_tag: text-generation', f'tags: [{architecture}]',
             '---', '', f"# {os.path.basename(hf_dir)}", '',
             f"A {name}-architecture causal language model exported from `{source}` by `export.py`.", '',
             f"- architecture: {name}, {c.n_layer} layers, {c.n_head} heads, width {c.n_embd}, context {c.block_size}, "
             f"{model.get_num_params() / 1e6:.2f}M parameters "
             f"({'tied' if c.tie_embeddings else 'separate'} input and output embeddings"
             f"{', ' + ', '.join(switches) if switches else ''})",
             f"- tokenizer: {TOKENIZER_CARD[tokenizer.name].format(n=tokenizer.vocab_size)}"]
    if checkpoint is not None:
        lines += [f"- training data: `{trained_dataset(checkpoint) or 'unknown'}`",
                  f"- iterations: {checkpoint.get('iter_num', 'unknown')}",
                  f"- best val loss: {checkpoint.get('best_val_loss', float('nan')):.4f}"]
        if checkpoint.get('command'):
            lines.append(f"- trained by: `{checkpoint['command']}`")
        if checkpoint.get('scalar_head_role') == 'value':
            lines.append("- an RLHF policy (rlhf.py): its PPO value head is not part of the export")
    lines += [f"- exported by: `python export.py {' '.join(sys.argv[1:])}`", '', '```python',
              'from transformers import pipeline',
              f"generate = pipeline('text-generation', model='{os.path.basename(hf_dir)}')",
              "print(generate('\\n', max_new_tokens=100, do_sample=True)[0]['generated_text'])", '```', '']
    return '\n'.join(lines)


tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(hf_dir)}.tmp-', dir=parent)
try:
    save_model(model, tmp, eos_token_id=tokenizer.eot_token, vocab_size=tokenizer.vocab_size)
    save_tokenizer(tokenizer, tmp, model_max_length=model.config.block_size)
    with open(os.path.join(tmp, 'README.md'), 'w', encoding='utf-8') as f:
        f.write(model_card())
    old = None
    if os.path.isdir(hf_dir):  # empty, or replaced with overwrite: moved aside, then removed
        old = tempfile.mkdtemp(prefix=f'.{os.path.basename(hf_dir)}.old-', dir=parent)
        os.replace(hf_dir, os.path.join(old, 'dir'))
    os.replace(tmp, hf_dir)
    if old:
        shutil.rmtree(old)
except BaseException:
    shutil.rmtree(tmp, ignore_errors=True)
    raise
print(f"wrote {hf_dir}: {', '.join(sorted(os.listdir(hf_dir)))}")
