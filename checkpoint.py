"""
ckpt.pt: building it, writing it atomically, reading it safely, and building a model from `init_from`.

A checkpoint is a dict of plain tensors and Python values with nanoGPT's keys (model, optimizer,
model_args, iter_num, best_val_loss, config) plus the tokenizer it was trained with and what an exact
resume needs (the GradScaler's state; dropout needs no RNG state, train.py reseeds it from (seed, rank,
step)), so torch.load(weights_only=True) reads it and nanoGPT's own checkpoints load here unchanged. A GPT with a scalar head (ppo.ScalarHeadGPT: rlhf.py's value head, train_reward.py's
reward head) keeps 'model' a plain GPT and saves the head under 'scalar_head', its use under
'scalar_head_role' ('value' or 'reward').

`init_from` means the same in every script: 'resume' (this script's out_dir/ckpt.pt), another run's
out_dir (a folder holding ckpt.pt), a GPT-2 hub name, or a local Hugging Face GPT-2 directory.
"""
import os
import sys
import tempfile
from dataclasses import fields

try:
    import fcntl  # the out_dir lock; Windows has no fcntl, and runs there go without the lock
except ImportError:
    fcntl = None

import torch

from configurator import UserError
from files import fault_if_full, follow_umask, space_for
from model import GPT, GPT2_NAMES, GPTConfig

RUN_FILES = ('ckpt.pt', 'resume.pt', 'log.jsonl', '.lock')  # what a training run writes into its out_dir
STATE_DICT_PREFIXES = ('_orig_mod.', 'module.')  # left by torch.compile and DDP wrappers
NANOGPT_MODEL_ARGS = ('block_size', 'vocab_size', 'n_layer', 'n_head', 'n_embd', 'dropout', 'bias')  # its GPTConfig
LEGACY_HEAD_KEYS = {'head': 'reward', 'value_head': 'value'}  # the scalar head's key before 2026-12


def new_model(**model_args):
    """GPT(GPTConfig(**model_args)); a configuration the model rejects (say, n_embd not divisible by n_head)
    is a UserError, since its numbers come from the user's settings or a checkpoint."""
    try:
        config = GPTConfig(**model_args)
    except ValueError as e:
        raise UserError(f"{e}: fix the model settings") from None
    return GPT(config)


def make_checkpoint(model, optimizer, iter_num, best_val_loss, config, tokenizer, model_state=None,
                    optimizer_state=None, **extra):
    """The ckpt.pt dict of every script: nanoGPT's keys (model_args: checkpoint_model_args), the tokenizer
    (sample.py, export.py and the evaluators then need no data/ folder), and the script's extra keys. The
    states, when given, replace model.state_dict() and optimizer.state_dict() (FSDP's, gathered: sharding.py)."""
    return {'model': clean_state_dict(model_state if model_state is not None else model.state_dict()),
            'optimizer': optimizer_state if optimizer_state is not None else optimizer.state_dict(),
            'model_args': checkpoint_model_args(model.config), 'iter_num': iter_num, 'best_val_loss': best_val_loss,
            'config': config, 'tokenizer': tokenizer.state(), **extra}


def checkpoint_model_args(config):
    """model_args as nanoGPT writes them (its GPTConfig's seven fields), plus only those of the other fields (the
    modern recipe's switches, gelu) that differ from their defaults: nanoGPT's GPTConfig(**model_args) rejects any
    other key, so a GPT-2-recipe checkpoint trained from scratch stays one that nanoGPT's sample.py and train.py
    load, and model_from_checkpoint fills the fields left out with their defaults (nanoGPT's model)."""
    return {f.name: getattr(config, f.name) for f in fields(config)
            if f.name in NANOGPT_MODEL_ARGS or getattr(config, f.name) != f.default}


def save_checkpoint(checkpoint, path):
    """Write to a temporary file of a name no other writer uses, flush it to disk, then rename: a crash or
    Ctrl-C mid-write leaves the previous ckpt.pt intact, and a reader only ever sees one whole checkpoint.
    A full disk is one line saying how much the checkpoint needs (files.space_for); the file gets the
    permissions of the umask, as any file the user writes."""
    folder = os.path.dirname(path) or '.'
    os.makedirs(folder, exist_ok=True)
    with space_for(path, lambda: checkpoint_bytes(checkpoint)):
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=os.path.basename(path) + '.', suffix='.tmp')
        try:
            with os.fdopen(fd, 'wb') as f:
                torch.save(checkpoint, f)
                f.flush()
                fault_if_full(tmp)
                os.fsync(f.fileno())
            follow_umask(tmp)
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.remove(tmp)
            raise


def checkpoint_bytes(obj):
    """About the bytes torch.save writes for obj: its tensors' storages, each once (a tied weight is one)."""
    storages = {}

    def walk(x):
        if isinstance(x, torch.Tensor):
            s = x.untyped_storage()
            storages[(s.data_ptr(), s.device)] = s.nbytes()
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, (list, tuple)):
            for v in x:
                walk(v)
    walk(obj)
    return sum(storages.values())


def check_new_run(out_dir, init_from, overwrite=False):
    """A UserError, before any work, when a new run (any init_from but 'resume') would write its checkpoints
    over a trained model in out_dir: its first save would replace days of training with a few steps'.
    overwrite=True is the user saying that is what they want."""
    trained = [os.path.join(out_dir, name) for name in ('ckpt.pt', 'resume.pt')
               if os.path.isfile(os.path.join(out_dir, name))] + sharded_checkpoints(out_dir)
    if init_from != 'resume' and trained and not overwrite:
        raise UserError(f"{trained[0]} holds a trained model, which this new run "
                        f"(init_from={init_from}) would overwrite: continue it with --init_from=resume, or train "
                        f"into a new --out_dir (--overwrite=True replaces it)")


def claim_out_dir(out_dir):
    """
    Make out_dir and check, before any work, that checkpoints can be written there; then hold an exclusive
    lock on out_dir/.lock for the life of the process, so a second run writing to the same out_dir stops at
    once with one line instead of racing this one. Removes temporary files that killed runs left behind
    (the lock says no live writer owns them). Returns the open lock file: keep a reference to it.
    """
    ckpt = os.path.join(out_dir, 'ckpt.pt')
    try:
        os.makedirs(out_dir, exist_ok=True)
        lock = open(os.path.join(out_dir, '.lock'), 'a+')
        with tempfile.TemporaryFile(dir=out_dir):  # the same kind of write a checkpoint save does
            pass
    except OSError as e:
        raise UserError(f"cannot write checkpoints into out_dir {out_dir} ({e.strerror}): pick a writable "
                        f"--out_dir") from None
    if os.path.isdir(ckpt):
        raise UserError(f"{ckpt} is a directory, so no checkpoint can be saved there: move it away or pick "
                        f"another --out_dir")
    if fcntl is not None:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            owner = lock.read().strip() or 'another process'
            raise UserError(f"out_dir {out_dir} is in use by {owner}: two runs writing one out_dir would "
                            f"overwrite each other's checkpoints; wait for it, stop it, or pick another --out_dir")
        lock.seek(0)
        lock.truncate()
        lock.write(f"pid {os.getpid()} ({' '.join(sys.argv[:1])})\n")
        lock.flush()
    for name in os.listdir(out_dir):
        if name.startswith('ckpt.pt.') and name.endswith('.tmp'):
            os.remove(os.path.join(out_dir, name))
    return lock


def training_run_in(folder, deep=True):
    """The path of a training run's file (RUN_FILES) in folder, or with deep in any folder under it; else None.
    Such a folder is never a place to replace or delete."""
    for root, dirs, names in os.walk(folder):
        found = [n for n in RUN_FILES if n in names]
        if found:
            return os.path.join(root, found[0])
        if not deep:
            return None
    return None


def clean_state_dict(state_dict):
    """Model weights with the keys of a bare GPT: no torch.compile / DDP prefixes and no
    causal-mask buffers (nanoGPT saves `attn.bias` when flash attention is unavailable)."""
    clean = {}
    for k, v in state_dict.items():
        for prefix in STATE_DICT_PREFIXES:
            while k.startswith(prefix):
                k = k[len(prefix):]
        if k.endswith('.attn.bias') and v.dim() == 4:
            continue
        clean[k] = v
    return clean


def load_checkpoint(path):
    """Read ckpt.pt onto the CPU (the caller moves the model) without running pickled code."""
    if not os.path.isfile(path):
        raise UserError(f"no checkpoint at {path}: train one first with "
                        f"`python train.py --out_dir={os.path.dirname(path) or '.'}` "
                        f"(or pick init_from= a GPT-2 name or a local Hugging Face directory)")
    checkpoint = load_weights(path, 'checkpoint')
    missing = [k for k in ('model', 'model_args') if k not in checkpoint]
    if not isinstance(checkpoint, dict) or missing:
        raise UserError(f"{path} is not a training checkpoint: it lacks {missing or 'a dict'}")
    checkpoint['model'] = clean_state_dict(checkpoint['model'])
    for key, role in LEGACY_HEAD_KEYS.items():
        if key in checkpoint:
            checkpoint['scalar_head'], checkpoint['scalar_head_role'] = checkpoint.pop(key), role
    return checkpoint


def load_weights(path, what):
    """torch.load(path) onto the CPU with weights_only=True; a file it cannot read (truncated, random bytes, a
    pickle that needs code to run) is a UserError. torch's own message advises weights_only=False, which runs
    whatever code the file holds: that advice is never passed on."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True)
    except Exception as e:
        text = str(e)
        if 'WeightsUnpickler error:' in text:  # keep only what the unpickler met, not the advice around it
            text = 'it holds more than tensors and plain values: ' + text.split('WeightsUnpickler error:', 1)[1].strip()
        first_line = (text.strip().splitlines() or [''])[0][:200]
        raise UserError(f"cannot read {what} {path} ({type(e).__name__}: {first_line}): the file is corrupt or "
                        f"truncated, or not a {what}; delete it (or restore a copy) and train or resume from another")


def model_from_checkpoint(checkpoint, dropout=None):
    """GPT with the checkpoint's architecture and weights; dropout may be changed."""
    names = {f.name for f in fields(GPTConfig)}
    model_args = {k: v for k, v in checkpoint['model_args'].items() if k in names}
    if dropout is not None:
        model_args['dropout'] = dropout
    model = new_model(**model_args)
    if not checkpoint['model']:  # a sharded checkpoint's meta.pt: the weights are loaded later
        return model
    try:
        model.load_state_dict(checkpoint['model'])
    except RuntimeError as e:
        raise UserError(f"the checkpoint's weights do not fit its model_args: {str(e).splitlines()[0]}")
    return model


def trained_dataset(checkpoint):
    """The dataset a checkpoint's run trained on, '' when it does not say (or for pretrained weights, None)."""
    return (checkpoint or {}).get('config', {}).get('dataset') or ''


def resume_path(out_dir):
    """Where train.py resumes: out_dir/resume.pt, the state an interrupted run saved beside the best model
    (always_save_checkpoint=False keeps ckpt.pt the best), when it is further on than ckpt.pt; else ckpt.pt. Each
    file says its own iteration: the choice does not hang on modification times, which a copy of the folder resets."""
    ckpt, resume = os.path.join(out_dir, 'ckpt.pt'), os.path.join(out_dir, 'resume.pt')
    if os.path.isfile(resume) and (not os.path.isfile(ckpt) or saved_iteration(resume) > saved_iteration(ckpt)):
        return resume
    return ckpt


def saved_iteration(path):
    """A checkpoint's iter_num, read without reading its tensors (mmap: only the pickled header is parsed)."""
    try:
        return torch.load(path, map_location='cpu', weights_only=True, mmap=True)['iter_num']
    except Exception:  # unreadable: load_checkpoint says why, in one line, once this file is chosen
        return -1


def sharded_checkpoints(out_dir):
    """The complete sharded checkpoints in out_dir (ckpt.dcp-<n> directories, sharding.save_sharded), oldest first."""
    names = os.listdir(out_dir) if os.path.isdir(out_dir) else []
    found = [n for n in names if n.startswith('ckpt.dcp-') and n.rsplit('-', 1)[1].isdigit()]
    return [os.path.join(out_dir, n) for n in sorted(found, key=lambda n: int(n.rsplit('-', 1)[1]))]


def newest_is_sharded(out_dir):
    """The newest sharded checkpoint in out_dir when it is newer than the ckpt.pt (or resume.pt) a resume would
    read, else None."""
    sharded = sharded_checkpoints(out_dir)
    if not sharded:
        return None
    one_file = resume_path(out_dir)
    if os.path.isfile(one_file) and os.path.getmtime(one_file) > os.path.getmtime(sharded[-1] + '/meta.pt'):
        return None
    return sharded[-1]


def load_model(init_from, out_dir=None, dropout=None, latest=False):
    """(model, checkpoint) for any init_from: 'resume' (out_dir/ckpt.pt, the best model; with latest, the newest
    resume point, see resume_path; a script that cannot resume passes no out_dir), another run's out_dir (a
    folder holding ckpt.pt), a GPT-2 hub name, or a local Hugging Face GPT-2 directory (checkpoint None for
    the last two). dropout, when given, replaces the model's."""
    if init_from == 'resume':
        if out_dir is None:
            raise UserError("init_from='resume' continues a script's own out_dir, which this script cannot do: name "
                            "the model to start from (an out_dir holding ckpt.pt, a GPT-2 name or a Hugging Face "
                            "directory)")
        checkpoint = load_checkpoint(resume_path(out_dir) if latest else os.path.join(out_dir, 'ckpt.pt'))
        return model_from_checkpoint(checkpoint, dropout), checkpoint
    if os.path.isfile(os.path.join(init_from, 'ckpt.pt')):
        checkpoint = load_checkpoint(os.path.join(init_from, 'ckpt.pt'))
        return model_from_checkpoint(checkpoint, dropout), checkpoint
    if init_from in GPT2_NAMES or os.path.isdir(init_from):
        override = {} if dropout is None else {'dropout': dropout}
        return GPT.from_pretrained(init_from, override), None
    raise UserError(f"init_from='{init_from}' is not 'resume', an out_dir holding ckpt.pt, a GPT-2 name "
                    f"({', '.join(GPT2_NAMES)}) or a local Hugging Face GPT-2 directory; train a model first, e.g. "
                    f"`python train.py config/train_shakespeare_char_cpu.py`")


def recorded_tokenizer(checkpoint, init_from=None):
    """The vocabulary a model carries with it, or None: a checkpoint's 'tokenizer' (written since 2026-12), or
    the tokenizer files of a local Hugging Face directory init_from (checkpoint None), as export.py writes."""
    from tokenizer import Tokenizer
    if checkpoint is not None:
        return Tokenizer.from_state(checkpoint['tokenizer']) if 'tokenizer' in checkpoint else None
    if init_from and os.path.isdir(init_from):
        from hf import load_tokenizer
        return load_tokenizer(init_from)
    return None


def tokenizer_for(checkpoint, init_from=None):
    """The vocabulary a model was trained with: the one it carries (recorded_tokenizer); else, for older
    checkpoints and nanoGPT's, the one their dataset's meta.pkl (a char vocabulary) or its absence (GPT-2 BPE)
    tells; else, for pretrained weights without tokenizer files, GPT-2 BPE."""
    from tokenizer import Tokenizer, for_dataset
    recorded = recorded_tokenizer(checkpoint, init_from)
    if recorded is not None:
        return recorded
    if checkpoint is None:
        return Tokenizer.gpt2()
    dataset = trained_dataset(checkpoint)
    tok = for_dataset(dataset) if dataset else Tokenizer.gpt2()
    model_vocab = checkpoint.get('model_args', {}).get('vocab_size')
    if model_vocab is not None and tok.vocab_size > model_vocab:
        raise UserError(f"the model has a {model_vocab}-token vocabulary but no meta.pkl was found for its "
                        f"dataset '{dataset}': run `python data/{dataset}/prepare.py` to recreate it")
    return tok


def check_vocabulary(trained_with, dataset, model):
    """The dataset's tokenizer, after checking it is the vocabulary the model was trained with (a UserError
    otherwise: the same ids would mean other text). `model` names the model in the message."""
    from tokenizer import for_dataset
    data_tok = for_dataset(dataset)
    if not trained_with.same_as(data_tok):
        raise UserError(f"{model} was trained with {trained_with}, but dataset '{dataset}' is prepared with "
                        f"{data_tok}: its ids would mean other text; pick the dataset the model was trained on, "
                        f"prepare the data with the model's vocabulary, or train from scratch")
    return data_tok


def weights_are_finite(model):
    """False if any weight is NaN or inf (training diverged): such weights are never saved nor sampled."""
    return all(torch.isfinite(p.to_local() if hasattr(p, 'to_local') else p).all() for p in model.parameters())
