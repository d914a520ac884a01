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
export never leaves a half-written one; --overwrite swaps the new one in with one atomic rename (on Linux), and
the next export removes what killed ones left. An hf_dir holding a training run (ckpt.pt, log.jsonl, ...) is
refused, --overwrite or not: the export never replaces a run.
"""
import os
import shutil
import sys
import tempfile

try:
    import fcntl  # the locks that tell a live export's temporary folders from a killed one's; not on Windows
except ImportError:
    fcntl = None

from checkpoint import load_model, tokenizer_for, trained_dataset, training_run_in
from configurator import UserError, configure
from files import exchange, fault_if_full, follow_umask, kill_point, space_for
from hf import HF_CLASSES, hf_architecture, save_model, save_tokenizer


def locked(folder):
    """An open descriptor of folder holding an exclusive lock on it, or None if another process holds the lock
    (or the file system has no locks). Keep it open as long as the folder must not be cleaned up."""
    if fcntl is None:
        return None
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not ours to read: not ours to clean either
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return fd
    except OSError:
        os.close(fd)
        return None


def clean_leftovers():
    """Remove the temporary folders, .NAME.tmp-* and .NAME.old-*, that killed exports of hf_dir left beside it
    (a live export holds a lock on each of its own). Where renames cannot be atomic (no exchange()), an export
    killed between its two renames leaves hf_dir missing and the previous export in .NAME.old-*/dir: it is put
    back first."""
    name = os.path.basename(hf_dir)
    for entry in sorted(os.listdir(parent), key=lambda e: '.tmp-' in e):  # .old-* first
        path = os.path.join(parent, entry)
        if not (entry.startswith((f'.{name}.tmp-', f'.{name}.old-')) and os.path.isdir(path)):
            continue
        fd = locked(path)
        if fd is None:
            continue  # a live export's, or no locks to tell
        try:
            previous = os.path.join(path, 'dir')
            if entry.startswith(f'.{name}.old-') and os.path.isdir(previous) and not os.path.exists(hf_dir):
                os.replace(previous, hf_dir)
                print(f"put back {hf_dir}, which an export killed while replacing it had moved to {path}")
            shutil.rmtree(path)
            print(f"removed {path}, left by an export that was killed")
        finally:
            os.close(fd)


def install(tmp):
    """Put the complete export tmp at hf_dir. Replacing a folder is one atomic exchange where the OS has one (the
    previous export then sits at tmp, and is removed); elsewhere two renames, the previous export kept in a locked
    .NAME.old-* folder between them (clean_leftovers of a later export puts it back if this one is killed there)."""
    kill_point('export-swap')
    if not os.path.isdir(hf_dir):
        os.replace(tmp, hf_dir)
    elif exchange(tmp, hf_dir):
        kill_point('export-swapped')
        shutil.rmtree(tmp)
    else:
        old = tempfile.mkdtemp(prefix=f'.{os.path.basename(hf_dir)}.old-', dir=parent)
        fd = locked(old)
        try:
            os.replace(hf_dir, os.path.join(old, 'dir'))
            try:
                kill_point('export-swapped')
                os.replace(tmp, hf_dir)
            except BaseException:
                os.replace(os.path.join(old, 'dir'), hf_dir)
                raise
            shutil.rmtree(old)
        finally:
            if fd is not None:
                os.close(fd)


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
if not os.path.isdir(parent) or not os.access(parent, os.W_OK):
    raise UserError(f"cannot write into {parent}: it is not a writable directory; pick another --hf_dir")
clean_leftovers()  # first: it may put back the hf_dir that a killed export had moved aside
if os.path.exists(hf_dir) and not os.path.isdir(hf_dir):
    raise UserError(f"hf_dir {hf_dir} is a file, not a directory: pick another --hf_dir")
run_file = training_run_in(hf_dir, deep=overwrite) if os.path.isdir(hf_dir) else None
if run_file:  # --overwrite replaces all of hf_dir: it must never take a run's checkpoint and log with it
    raise UserError(f"hf_dir {hf_dir} holds a training run ({run_file}): the export would replace it; write the "
                    f"export to a folder of its own, e.g. --hf_dir={hf_dir.rstrip(os.sep)}-hf")
if os.path.isdir(hf_dir) and os.listdir(hf_dir) and not overwrite:
    raise UserError(f"hf_dir {hf_dir} exists and is not empty: pick another --hf_dir, or pass --overwrite=True "
                    f"to replace it")

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


with space_for(hf_dir, 4 * sum(p.numel() for p in model.parameters())):  # float32 weights; the rest is small
    tmp = tempfile.mkdtemp(prefix=f'.{os.path.basename(hf_dir)}.tmp-', dir=parent)
    tmp_lock = locked(tmp)
    follow_umask(tmp, 0o777)  # mkdtemp makes it private
    try:
        save_model(model, tmp, eos_token_id=tokenizer.eot_token, vocab_size=tokenizer.vocab_size)
        fault_if_full(os.path.join(tmp, 'model.safetensors'))
        save_tokenizer(tokenizer, tmp, model_max_length=model.config.block_size)
        with open(os.path.join(tmp, 'README.md'), 'w', encoding='utf-8') as f:
            f.write(model_card())
        install(tmp)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
print(f"wrote {hf_dir}: {', '.join(sorted(os.listdir(hf_dir)))}")
