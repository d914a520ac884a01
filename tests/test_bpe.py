"""A byte-level BPE trained on your own text (data/text/prepare.py --tokenizer=bpe): exact round trips, the val
split unseen by the trainer, the same files from the same text, and the tokenizer carried through train.py,
ckpt.pt, sample.py, eval_tasks.py's bits per byte and export.py into transformers' AutoTokenizer and back."""
import os
import random
import shutil

import numpy as np
import pytest
import torch

from configurator import UserError
from conftest import REPO, assert_one_line_error, run_script
from eval_tasks import token_bytes
from test_export import TINY, hf_greedy, samples
from test_tokenizer import random_unicode
from tokenizer import Tokenizer, for_dataset, train_bpe

transformers = pytest.importorskip('transformers')

with open(os.path.join(REPO, 'data', 'shakespeare_char', 'input.txt'), encoding='utf-8') as f:
    SHAKESPEARE = f.read()


def prepare(*args):
    return run_script('data/text/prepare.py', '--tokenizer=bpe', *args)


def read_bin(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


# -----------------------------------------------------------------------------
# the tokenizer itself

@pytest.fixture(scope='module')
def small():
    return train_bpe([SHAKESPEARE[:50_000]], 300)


def test_round_trips_any_text_and_decodes_any_ids(small):
    assert (small.name, small.vocab_size, small.eot_token) == ('bpe', 300, 0)
    rng = random.Random(0)
    for _ in range(300):
        s = random_unicode(rng, rng.randint(0, 60))
        assert small.decode(small.encode(s)) == s
        raw = bytes(rng.randrange(256) for _ in range(rng.randint(0, 60)))
        s = raw.decode('utf-8', 'replace')  # what --errors=replace reads from bytes that are not UTF-8
        assert small.decode(small.encode(s)) == s
    s = "say <|endoftext|> plainly"  # ordinary encoding, as GPT-2's: the special token's text is just text
    assert small.eot_token not in small.encode(s) and small.decode(small.encode(s)) == s
    # any ids decode to their bytes, a cut multi-byte character as U+FFFD; the token strings of tokenizer.json
    # are bytes written as GPT-2's stand-in characters (transformers' own table of them)
    from transformers.convert_slow_tokenizer import bytes_to_unicode
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    vocab = {i: t for t, i in small.encoding.get_vocab().items()}
    as_bytes = lambda i: b'<|endoftext|>' if i == 0 else bytes(byte_of[c] for c in vocab[i])
    for _ in range(300):
        ids = [rng.randrange(300) for _ in range(rng.randint(0, 12))]
        assert small.decode(ids) == b''.join(map(as_bytes, ids)).decode('utf-8', 'replace')
    with pytest.raises(UserError, match='out of range'):
        small.decode([3, 300])


def test_state_same_as_and_model_rows(small):
    back = Tokenizer.from_state(small.state())
    assert back.same_as(small) and back.encode(SHAKESPEARE[:2000]) == small.encode(SHAKESPEARE[:2000])
    other = train_bpe([SHAKESPEARE[50_000:100_000]], 300)  # the same size, other merges
    assert other.vocab_size == 300 and not other.same_as(small) and repr(other) != repr(small)
    assert not small.same_as(Tokenizer.char_from_text(SHAKESPEARE[:50_000]))
    assert (small.model_vocab_size, Tokenizer.gpt2().model_vocab_size) == (320, 50304)  # multiples of 64
    assert Tokenizer.char_from_text(SHAKESPEARE).model_vocab_size == 65  # characters: as nanoGPT, unpadded
    with pytest.raises(UserError, match='at least 257'):
        train_bpe(['some text'], 256)


# -----------------------------------------------------------------------------
# data/text/prepare.py --tokenizer=bpe

@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    """Three documents; the last is all val (the last 10% of the characters) and full of the pair 'qz', which
    Shakespeare never writes: a trainer that saw val would merge it first."""
    root = tmp_path_factory.mktemp('bpe_folder')
    docs = [SHAKESPEARE[:90_000], SHAKESPEARE[90_000:180_000], 'qz' * 10_000]
    for name, doc in zip(('a.txt', 'b/c.txt', 'b/d.txt'), docs):
        (root / 'in' / name).parent.mkdir(parents=True, exist_ok=True)
        (root / 'in' / name).write_text(doc, encoding='utf-8')
    return root, docs


def test_trained_on_train_only_documents_separated_deterministic(folder):
    root, docs = folder
    out, again = root / 'out', root / 'again'
    run_script('data/text/prepare.py', f'--input={root / "in"}', f'--out_dir={out}', '--tokenizer=char')
    prepare(f'--input={root / "in"}', f'--out_dir={out}', '--vocab_size=400')
    assert not (out / 'meta.pkl').exists()  # an earlier char vocabulary would make the ids read as characters
    tok = for_dataset(str(out))
    assert (tok.name, tok.vocab_size) == ('bpe', 400)
    merged = [t for t, i in tok.encoding.get_vocab().items() if i > 256]
    assert merged and not [t for t in merged if 'qz' in t or 'zq' in t]  # the val text was never trained on
    train, val = read_bin(out / 'train.bin'), read_bin(out / 'val.bin')
    cuts = [i for i, t in enumerate(train) if t == tok.eot_token]
    assert len(cuts) == 1 and tok.decode(train[:cuts[0]]) == docs[0] and tok.decode(train[cuts[0] + 1:]) == docs[1]
    assert tok.decode(val) == docs[2] and len(val) > 5_000  # 'qz' unmerged: a token per letter or so
    # the same text and settings, another process (other hash seeds, one trainer thread): the same files
    run_script('data/text/prepare.py', '--tokenizer=bpe', f'--input={root / "in"}', f'--out_dir={again}',
               '--vocab_size=400', env={'PYTHONHASHSEED': '1', 'RAYON_NUM_THREADS': '1'})
    for name in ('tokenizer.json', 'train.bin', 'val.bin'):
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
    run_script('data/text/prepare.py', f'--input={root / "in"}', f'--out_dir={again}')  # GPT-2 BPE again
    assert not (again / 'tokenizer.json').exists() and for_dataset(str(again)).name == 'gpt2'


def test_vocab_size_out_of_range_is_one_line(folder, tmp_path):
    root, _ = folder
    for size, words in ((65_536, ('65,536', 'uint16', '65,535')), (100, ('too small', '257'))):
        proc = run_script('data/text/prepare.py', '--tokenizer=bpe', f'--input={root / "in" / "a.txt"}',
                          f'--out_dir={tmp_path / "out"}', f'--vocab_size={size}', check=False)
        assert_one_line_error(proc, *words)
        assert not (tmp_path / 'out').exists()
    assert_one_line_error(run_script('data/text/prepare.py', f'--input={root / "in" / "a.txt"}', '--tokenizer=wpe',
                                     check=False), "'gpt2', 'bpe' or 'char'")


def test_a_dataset_with_two_vocabularies_is_refused(tmp_path, small):
    (tmp_path / 'meta.pkl').write_bytes(b'')
    (tmp_path / 'tokenizer.json').write_text(small.json)
    with pytest.raises(UserError, match='both a meta.pkl and a tokenizer.json'):
        for_dataset(str(tmp_path))


# -----------------------------------------------------------------------------
# train.py, ckpt.pt, sample.py, eval_tasks.py, export.py

@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """(data dir, out_dir, hf dir): tiny Shakespeare's first 100,000 characters with a 400-token BPE (a model
    of 448 rows), a tiny model trained on it and exported."""
    root = tmp_path_factory.mktemp('bpe_run')
    (root / 'text.txt').write_text(SHAKESPEARE[:100_000], encoding='utf-8')
    data, out, hf = root / 'data', root / 'out', root / 'hf'
    prepare(f'--input={root / "text.txt"}', f'--out_dir={data}', '--vocab_size=400')
    log = run_script('train.py', f'--dataset={data}', f'--out_dir={out}', *TINY, '--max_iters=150',
                     '--lr_decay_iters=150', '--eval_interval=150').stdout
    assert 'found vocab_size = 400' in log and 'padded to 448' in log
    run_script('export.py', f'--out_dir={out}', f'--hf_dir={hf}')
    return data, out, hf


def test_exported_tokenizer_gives_the_ids_of_the_bins(trained):
    data, _, hf = trained
    hf_tok = transformers.AutoTokenizer.from_pretrained(hf)
    cut = int(100_000 * 0.9)
    for split, text in (('train', SHAKESPEARE[:cut]), ('val', SHAKESPEARE[cut:100_000])):
        ids = hf_tok(text).input_ids
        assert ids == read_bin(data / f'{split}.bin') and hf_tok.decode(ids) == text
    odd = "  ünïcödé 🤖 can't we'll\r\n\t  x  "
    assert hf_tok(odd).input_ids == for_dataset(str(data)).encode(odd)
    assert hf_tok.eos_token_id == for_dataset(str(data)).eot_token == 0


def test_export_generates_what_sample_py_generates(trained):
    data, out, hf = trained
    prompt, new = 'ROMEO:', 40
    ours = samples(run_script('sample.py', f'--out_dir={out}', f'--start={prompt}', '--temperature=0',
                              '--num_samples=1', f'--max_new_tokens={new}', '--device=cpu', '--dtype=float32').stdout)
    pipe = transformers.pipeline('text-generation', model=str(hf))
    theirs = pipe(prompt, max_new_tokens=new, do_sample=False)[0]['generated_text']
    assert ours == [theirs] == [hf_greedy(str(hf), prompt, new)]
    from checkpoint import load_model
    model = load_model('resume', str(out))[0].eval()
    hf_model = transformers.AutoModelForCausalLM.from_pretrained(hf).eval()
    assert (model.config.vocab_size, hf_model.config.vocab_size) == (448, 400)  # the padding rows left out
    idx = torch.randint(0, 400, (2, 64))
    with torch.no_grad():
        ref, got = hf_model(idx).logits, model(idx, all_logits=True)[0][..., :400]
    assert (ref - got).abs().max().item() < 1e-4


def test_exported_dir_comes_back_through_init_from(trained, tmp_path):
    data, out, hf = trained
    from checkpoint import load_model, tokenizer_for
    back, none = load_model(str(hf))
    assert none is None and back.config.vocab_size == 400
    assert tokenizer_for(None, str(hf)).same_as(for_dataset(str(data)))
    run_script('train.py', f'--dataset={data}', f'--init_from={hf}', f'--out_dir={tmp_path / "ft"}', *TINY,
               '--max_iters=3', '--lr_decay_iters=3', '--eval_interval=3')
    assert tokenizer_for(load_model('resume', str(tmp_path / 'ft'))[1]).same_as(for_dataset(str(data)))


def test_a_lone_checkpoint_samples_and_scores_bits_per_byte(trained, tmp_path):
    data, out, _ = trained
    lone, elsewhere, hidden = tmp_path / 'lone', tmp_path / 'cwd', tmp_path / 'hidden'
    lone.mkdir()
    elsewhere.mkdir()  # no data/ folder: the vocabulary must come from ckpt.pt itself
    shutil.copy(out / 'ckpt.pt', lone / 'ckpt.pt')
    os.replace(data, hidden)  # the dataset it was trained on is gone too
    try:
        got = run_script(os.path.join(REPO, 'sample.py'), f'--out_dir={lone}', '--start=ROMEO:', '--temperature=0',
                         '--num_samples=1', '--max_new_tokens=20', '--device=cpu', '--dtype=float32',
                         cwd=elsewhere).stdout
    finally:
        os.replace(hidden, data)
    want = run_script('sample.py', f'--out_dir={out}', '--start=ROMEO:', '--temperature=0', '--num_samples=1',
                      '--max_new_tokens=20', '--device=cpu', '--dtype=float32').stdout
    assert samples(got) == samples(want) and samples(got)[0].startswith('ROMEO:')
    # bits per byte counts each target's bytes: over val.bin they add up to the val text's bytes
    val = read_bin(data / 'val.bin')
    lengths = token_bytes(for_dataset(str(data)), 448)
    assert int(lengths[val].sum()) == len(SHAKESPEARE[90_000:100_000].encode('utf-8'))
    assert lengths[400:].sum() == 0
    run_script('eval_tasks.py', f'--out_dir={lone}', '--task=bpb', f'--dataset={data}', '--eval_iters=2',
               '--batch_size=4', '--device=cpu', '--dtype=float32', f'--out_file={tmp_path / "bpb.json"}')
    assert 'bpb' in (tmp_path / 'bpb.json').read_text()


def test_resume_refuses_a_retrained_tokenizer(folder, tmp_path):
    root, docs = folder
    data, out = tmp_path / 'data', tmp_path / 'out'
    prepare(f'--input={root / "in" / "a.txt"}', f'--out_dir={data}', '--vocab_size=300')
    run_script('train.py', f'--dataset={data}', f'--out_dir={out}', *TINY, '--max_iters=4', '--lr_decay_iters=4',
               '--eval_interval=4')
    prepare(f'--input={root / "in" / "b" / "c.txt"}', f'--out_dir={data}', '--vocab_size=300')  # other merges
    assert for_dataset(str(data)).vocab_size == 300
    before = (out / 'ckpt.pt').read_bytes()
    proc = run_script('train.py', f'--dataset={data}', f'--out_dir={out}', '--init_from=resume', *TINY,
                      '--max_iters=8', '--lr_decay_iters=8', '--eval_interval=4', check=False)
    assert_one_line_error(proc, 'was trained with', 'would mean other text', 'fingerprint=')
    assert (out / 'ckpt.pt').read_bytes() == before  # the checkpoint is untouched


def test_a_foreign_tokenizer_is_refused_not_misread(tmp_path, small):
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import pre_tokenizers

    from hf import load_tokenizer
    rust = RustTokenizer.from_str(small.json)
    rust.pre_tokenizer = pre_tokenizers.Whitespace()  # another split: tokenizer.py would encode text otherwise
    (tmp_path / 'tokenizer.json').write_text(rust.to_str())
    with pytest.raises(UserError, match="byte-level BPE with GPT-2's split pattern"):
        load_tokenizer(str(tmp_path))
    (tmp_path / 'tokenizer.json').unlink()
    (tmp_path / 'vocab.json').write_text('{"a": 0, "b": 1}')  # vocab.json alone, not GPT-2's
    with pytest.raises(UserError, match='neither'):
        load_tokenizer(str(tmp_path))
    (tmp_path / 'vocab.json').unlink()
    (tmp_path / 'tokenizer.json').write_text(small.json)
    assert load_tokenizer(str(tmp_path)).same_as(small)
