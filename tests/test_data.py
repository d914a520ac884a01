"""data/*/prepare.py and data/common.py: real token counts, the OpenWebText pipeline on a local corpus,
one-line errors for bad input, atomic writes. No network: tiktoken and Hugging Face run offline."""
import http.server
import json
import os
import random
import subprocess
import sys
import threading

import numpy as np
import pytest

from configurator import UserError
from conftest import assert_one_line_error, run_script
from data import common
from tokenizer import DATA_DIR, REPO_DIR, Tokenizer

SHAKESPEARE = os.path.join(DATA_DIR, 'shakespeare_char', 'input.txt')
EOT = 50256


@pytest.fixture(scope='session')
def offline_env(tmp_path_factory):
    """Environment for the scripts: an empty tiktoken cache (the offline GPT-2 build), Hugging Face offline
    with its cache in a temporary folder."""
    root = tmp_path_factory.mktemp('env')
    env = dict(os.environ, TIKTOKEN_CACHE_DIR=str(root / 'tiktoken'), HF_DATASETS_CACHE=str(root / 'hf'),
               HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', HF_DATASETS_DISABLE_PROGRESS_BARS='1')
    env.pop('HF_ENDPOINT', None)
    return env


def run(env, script, *args, cwd=None, extra_env=None):
    """python data/<script>/prepare.py args, exactly as a user runs it (from a directory that is not the repo)."""
    return run_script(os.path.join(DATA_DIR, script, 'prepare.py'), *args, cwd=cwd or os.path.dirname(REPO_DIR),
                      timeout=300, check=False, env={**env, **(extra_env or {})})


def ok(result):
    assert result.returncode == 0, result.stderr
    return result


def read_bin(path):
    return np.fromfile(path, dtype=np.uint16)


@pytest.fixture(scope='module')
def shakespeare():
    with open(SHAKESPEARE, encoding='utf-8') as f:
        return f.read()


# -----------------------------------------------------------------------------
# shakespeare_char, shakespeare, text

def test_shakespeare_char(offline_env, tmp_path, shakespeare):
    ok(run(offline_env, 'shakespeare_char', f'--out_dir={tmp_path}'))
    train, val = read_bin(tmp_path / 'train.bin'), read_bin(tmp_path / 'val.bin')
    assert (len(train), len(val)) == (1_003_854, 111_540)
    tok = Tokenizer.from_meta(tmp_path / 'meta.pkl')
    assert tok.vocab_size == 65
    assert tok.decode(train) + tok.decode(val) == shakespeare
    assert sorted(os.listdir(tmp_path)) == ['manifest.json', 'meta.pkl', 'train.bin', 'val.bin']  # no .tmp left behind


def test_shakespeare_gpt2(offline_env, tmp_path, shakespeare):
    ok(run(offline_env, 'shakespeare', f'--out_dir={tmp_path}'))
    train, val = read_bin(tmp_path / 'train.bin'), read_bin(tmp_path / 'val.bin')
    assert (len(train), len(val)) == (301_966, 36_059)
    tok = Tokenizer.gpt2()
    assert tok.decode(train) + tok.decode(val) == shakespeare
    assert not (tmp_path / 'meta.pkl').exists()


def test_text_prepare_folder_of_documents(offline_env, tmp_path):
    docs = {'a.txt': 'First document, with a line.\n', 'b/c.txt': 'Second: ünïcödé ✓ and <|endoftext|> as text.\n',
            'b/d.txt': 'Third and last document, long enough to hold the val cut. ' * 3, 'notes.md': 'not a .txt'}
    for name, text in docs.items():
        (tmp_path / 'in' / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / 'in' / name).write_text(text, encoding='utf-8')
    (tmp_path / 'in' / 'empty.txt').write_text('')  # an empty file is no document
    out = tmp_path / 'mybook'
    ok(run(offline_env, 'text', f'--input={tmp_path / "in"}', f'--out_dir={out}', '--val_fraction=0.2'))
    train, val = read_bin(out / 'train.bin'), read_bin(out / 'val.bin')
    texts = [docs['a.txt'], docs['b/c.txt'], docs['b/d.txt']]  # sorted by path
    tok = Tokenizer.gpt2()
    # documents joined by the end-of-text token (the literal '<|endoftext|>' in b/c.txt is ordinary text)
    ids = np.concatenate([train, val])
    pieces = [tok.decode(piece) for piece in np.split(ids, np.flatnonzero(ids == EOT))]
    assert pieces == [texts[0], '<|endoftext|>' + texts[1], '<|endoftext|>' + texts[2]]
    # and the split falls at 80% of the characters
    total = sum(map(len, texts))
    train_chars = len(tok.decode([i for i in train if i != EOT]))
    assert train_chars == int(total * 0.8)
    # a char vocabulary into the same folder replaces the outputs and writes meta.pkl; GPT-2 again removes it
    ok(run(offline_env, 'text', f'--input={tmp_path / "in" / "b" / "*.txt"}', f'--out_dir={out}', '--tokenizer=char'))
    char = Tokenizer.from_meta(out / 'meta.pkl')
    assert char.decode(read_bin(out / 'train.bin')) + char.decode(read_bin(out / 'val.bin')) == texts[1] + texts[2]
    ok(run(offline_env, 'text', f'--input={tmp_path / "in" / "a.txt"}', f'--out_dir={out}'))
    assert not (out / 'meta.pkl').exists()


def test_text_prepare_char_matches_shakespeare_char(offline_env, tmp_path):
    ok(run(offline_env, 'text', f'--input={SHAKESPEARE}', f'--out_dir={tmp_path}', '--tokenizer=char'))
    assert (len(read_bin(tmp_path / 'train.bin')), len(read_bin(tmp_path / 'val.bin'))) == (1_003_854, 111_540)


# -----------------------------------------------------------------------------
# bad input: one line, exit code 2, no traceback

def test_text_bad_inputs(offline_env, tmp_path):
    assert_one_line_error(run(offline_env, 'text'), '--input=')
    assert_one_line_error(run(offline_env, 'text', f'--input={tmp_path / "missing.txt"}'),
                          'missing.txt', 'no such file')
    (tmp_path / 'empty.txt').write_text('')
    assert_one_line_error(run(offline_env, 'text', f'--input={tmp_path / "empty.txt"}'), 'empty.txt', 'no text')
    (tmp_path / 'nothing').mkdir()
    assert_one_line_error(run(offline_env, 'text', f'--input={tmp_path / "nothing"}'), 'nothing', 'no .txt files')
    (tmp_path / 'tiny.txt').write_text('x')
    assert_one_line_error(run(offline_env, 'text', f'--input={tmp_path / "tiny.txt"}'), 'too little')
    assert_one_line_error(run(offline_env, 'text', f'--input={tmp_path / "tiny.txt"}', '--tokenizer=wordpiece'),
                          "'wordpiece'")
    assert_one_line_error(run(offline_env, 'text', f'--input={tmp_path / "tiny.txt"}', '--val_fraction=1.5'),
                          'val_fraction')
    assert_one_line_error(run(offline_env, 'text', '--inptu=x'), 'did you mean input')


def test_text_not_utf8_names_file_and_offset(offline_env, tmp_path):
    bad = tmp_path / 'latin1.txt'
    bad.write_bytes('caf\u00e9 au lait, '.encode('utf-8') * 3 + 'na\u00efve'.encode('latin-1'))
    offset = len('caf\u00e9 au lait, '.encode('utf-8') * 3) + 2
    out = tmp_path / 'out'
    assert_one_line_error(run(offline_env, 'text', f'--input={bad}', f'--out_dir={out}'),
                   str(bad), f'byte offset {offset}', '--errors=replace')
    assert not out.exists()
    ok(run(offline_env, 'text', f'--input={bad}', f'--out_dir={out}', '--errors=replace'))
    tok = Tokenizer.gpt2()
    assert tok.decode(read_bin(out / 'train.bin')) + tok.decode(read_bin(out / 'val.bin')) == \
        bad.read_bytes().decode('utf-8', 'replace')
    assert_one_line_error(run(offline_env, 'text', f'--input={bad}', '--errors=skip'), "'skip'")


def test_vocabulary_too_big_for_uint16(offline_env, tmp_path):
    chars = [chr(c) for c in range(0x100, 0x100 + 70_000 + 2048) if not 0xd800 <= c <= 0xdfff][:70_000]
    (tmp_path / 'many.txt').write_text(''.join(chars), encoding='utf-8')
    assert_one_line_error(run(offline_env, 'text', f'--input={tmp_path / "many.txt"}', '--tokenizer=char',
                       f'--out_dir={tmp_path / "out"}'), '70,000 tokens', 'uint16')
    assert not (tmp_path / 'out').exists()
    common.check_vocab_fits_uint16(65_535)
    with pytest.raises(UserError, match='uint16'):
        common.check_vocab_fits_uint16(65_536)
    with pytest.raises(UserError, match='0..65535'):
        common.as_uint16([1, 65_536])
    with pytest.raises(UserError, match='0..65535'):
        common.as_uint16([-1, 2])


def test_check_utf8_in_chunks(tmp_path):
    rng = random.Random(0)
    for _ in range(50):
        data = bytearray('h\u00e9llo w\u00f6rld \u20ac \U0001d11e '.encode() * rng.randint(1, 20))
        data.insert(rng.randrange(len(data) + 1), 0xff)
        with pytest.raises(UnicodeDecodeError) as e:
            bytes(data).decode('utf-8')
        (tmp_path / 'f').write_bytes(data)
        with pytest.raises(UserError, match=f'byte offset {e.value.start} '):
            common.check_utf8(tmp_path / 'f', chunk_size=rng.randint(1, 7))
    (tmp_path / 'cut').write_bytes('\u20ac'.encode()[:2])  # a character cut at the end of the file
    with pytest.raises(UserError, match='byte offset 0 '):
        common.check_utf8(tmp_path / 'cut', chunk_size=1)


# -----------------------------------------------------------------------------
# atomic writes

def test_atomic_outputs_keep_old_files_on_failure(tmp_path):
    (tmp_path / 'train.bin').write_bytes(b'good')
    for failure in (RuntimeError, KeyboardInterrupt):
        with pytest.raises(failure):
            with common.atomic_outputs(tmp_path, ['train.bin', 'val.bin']) as files:
                files['train.bin'].write(b'half-writ')
                raise failure()
        assert (tmp_path / 'train.bin').read_bytes() == b'good'
        assert sorted(os.listdir(tmp_path)) == ['train.bin']


def test_killed_prepare_leaves_no_truncated_bin_and_rerun_is_safe(offline_env, tmp_path):
    # a process killed mid-write (os._exit: no cleanup runs) leaves only its .tmp files
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from data.common import atomic_outputs\n"
            "with atomic_outputs(sys.argv[1], ['train.bin', 'val.bin']) as f:\n"
            "    f['train.bin'].write(b'\\x01\\x00' * 1000); f['train.bin'].flush(); os._exit(9)\n")
    killed = subprocess.run([sys.executable, '-c', code, str(tmp_path), REPO_DIR])
    assert killed.returncode == 9
    assert sorted(os.listdir(tmp_path)) == ['train.bin.tmp', 'val.bin.tmp']  # nothing training would read
    ok(run(offline_env, 'shakespeare', f'--out_dir={tmp_path}'))
    assert sorted(os.listdir(tmp_path)) == ['manifest.json', 'train.bin', 'val.bin']
    assert len(read_bin(tmp_path / 'train.bin')) == 301_966


def test_read_or_download(tmp_path):
    served = tmp_path / 'served'
    served.mkdir()
    (served / 'input.txt').write_text('downloaded text\n')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(served), **kwargs)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/input.txt'
        path = tmp_path / 'here' / 'input.txt'
        path.parent.mkdir()
        assert common.read_or_download(str(path), url) == 'downloaded text\n'
        assert path.read_text() == 'downloaded text\n' and os.listdir(path.parent) == ['input.txt']
        with pytest.raises(UserError, match='downloading it from .* failed'):
            common.read_or_download(str(tmp_path / 'gone.txt'), url.replace('input.txt', 'nope.txt'))
    finally:
        server.shutdown()


# -----------------------------------------------------------------------------
# the OpenWebText pipeline on local corpora

def make_documents(n, seed=0):
    """n OpenWebText-like documents: Shakespeare lines, some unicode, one empty document."""
    with open(SHAKESPEARE, encoding='utf-8') as f:
        lines = f.read().splitlines()
    rng = random.Random(seed)
    docs = ['\n'.join(rng.choice(lines) for _ in range(rng.randint(1, 30))) for _ in range(n)]
    docs[3] = ('Caf\u00e9 \u2615, na\u00efve r\u00e9sum\u00e9, \u65e5\u672c\u8a9e, \U0001f600 '
               'and <|endoftext|> as plain text')
    docs[7] = ''
    return docs


def expected_ids(docs, test_size, seed):
    """nanoGPT's pipeline, the slow obvious way: datasets' train_test_split of the real documents, then each
    document's encode_ordinary + [50256], in the split's order."""
    import datasets
    split = datasets.Dataset.from_dict({'text': docs}).train_test_split(test_size=test_size, seed=seed, shuffle=True)
    tok = Tokenizer.gpt2()
    return {name: [i for doc in split[key]['text'] for i in tok.encode(doc) + [EOT]]
            for name, key in (('train', 'train'), ('val', 'test'))}


@pytest.fixture(scope='module')
def jsonl_corpus(tmp_path_factory):
    docs = make_documents(300)
    folder = tmp_path_factory.mktemp('corpus')
    for k in range(3):  # three files, read in sorted order: documents keep their order
        with open(folder / f'part{k}.jsonl', 'w', encoding='utf-8') as f:
            for doc in docs[k * 100:(k + 1) * 100]:
                f.write(json.dumps({'text': doc, 'id': len(doc)}) + '\n')
    return folder, docs


def test_openwebtext_pipeline_equals_per_document_tokenisation(offline_env, tmp_path, jsonl_corpus):
    folder, docs = jsonl_corpus
    args = [f'--dataset={folder}', '--test_size=0.05', '--shard_size=4096']
    two = ok(run(offline_env, 'openwebtext', *args, '--num_proc=2', f'--out_dir={tmp_path / "two"}'))
    assert '285 train, 15 val' in two.stdout
    n_train_shards = int(two.stdout.split(' shards: ')[1].split(' train')[0])
    assert n_train_shards >= 4, two.stdout  # several shards, so the order across shards is exercised
    want = expected_ids(docs, 0.05, 2357)
    for split in ('train', 'val'):
        assert read_bin(tmp_path / 'two' / f'{split}.bin').tolist() == want[split]
    # one process, any shard size: the same bytes
    ok(run(offline_env, 'openwebtext', *args[:-1], '--num_proc=1', f'--out_dir={tmp_path / "one"}'))
    for split in ('train', 'val'):
        assert (tmp_path / 'one' / f'{split}.bin').read_bytes() == (tmp_path / 'two' / f'{split}.bin').read_bytes()
    assert sorted(os.listdir(tmp_path / 'two')) == ['manifest.json', 'train.bin', 'val.bin']


def test_openwebtext_split_is_deterministic_for_the_seed(offline_env, tmp_path, jsonl_corpus):
    # the output is a function of the seed: equal to the split datasets computes for it (so every run with
    # that seed gives the same bytes, as the 1- and 2-process runs above do), and another seed differs
    folder, docs = jsonl_corpus
    outs = {}
    for seed in (2357, 1):
        ok(run(offline_env, 'openwebtext', f'--dataset={folder}', f'--seed={seed}', '--num_proc=1',
               f'--out_dir={tmp_path / str(seed)}'))
        outs[seed] = {split: read_bin(tmp_path / str(seed) / f'{split}.bin').tolist() for split in ('train', 'val')}
    assert outs[2357] == expected_ids(docs, 0.0005, 2357)
    assert outs[1] == expected_ids(docs, 0.0005, 1) and outs[1] != outs[2357]


@pytest.mark.parametrize('kind', ['txt', 'parquet', 'save_to_disk'])
def test_openwebtext_other_local_formats(offline_env, tmp_path, kind):
    import datasets
    docs = [d for d in make_documents(40, seed=1) if d]  # a .txt file cannot hold an empty document
    corpus = tmp_path / 'corpus'
    if kind == 'txt':
        corpus.mkdir()
        for i, doc in enumerate(docs):
            (corpus / f'doc{i:03d}.txt').write_text(doc, encoding='utf-8')
    elif kind == 'parquet':
        corpus.mkdir()
        datasets.Dataset.from_dict({'text': docs}).to_parquet(str(corpus / 'docs.parquet'))
    else:
        datasets.DatasetDict({'train': datasets.Dataset.from_dict({'text': docs})}).save_to_disk(str(corpus))
    ok(run(offline_env, 'openwebtext', f'--dataset={corpus}', '--test_size=0.1', '--num_proc=2',
           '--shard_size=1000', f'--out_dir={tmp_path / "out"}'))
    want = expected_ids(docs, 0.1, 2357)
    for split in ('train', 'val'):
        assert read_bin(tmp_path / 'out' / f'{split}.bin').tolist() == want[split]


def test_openwebtext_bad_inputs(offline_env, tmp_path):
    out = f'--out_dir={tmp_path / "out"}'
    assert_one_line_error(run(offline_env, 'openwebtext', f'--dataset={tmp_path / "nope"}', out),
                          'nope', 'no such file')
    (tmp_path / 'empty').mkdir()
    assert_one_line_error(run(offline_env, 'openwebtext', f'--dataset={tmp_path / "empty"}', out), 'no .txt')
    (tmp_path / 'bad').mkdir()
    (tmp_path / 'bad' / 'a.txt').write_text('fine\n')
    (tmp_path / 'bad' / 'b.txt').write_bytes(b'ok so far \xff\xfe')
    assert_one_line_error(run(offline_env, 'openwebtext', f'--dataset={tmp_path / "bad"}', out),
                   str(tmp_path / 'bad' / 'b.txt'), 'byte offset 10', '--errors=replace')
    with open(tmp_path / 'bad.jsonl', 'wb') as f:
        f.write(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    assert_one_line_error(run(offline_env, 'openwebtext', f'--dataset={tmp_path / "bad.jsonl"}', out),
                   'bad.jsonl', 'byte offset 30')
    with open(tmp_path / 'notext.jsonl', 'w') as f:
        f.write('{"body": "a"}\n{"body": "b"}\n')
    assert_one_line_error(run(offline_env, 'openwebtext', f'--dataset={tmp_path / "notext.jsonl"}', out),
                          "no 'text' column")
    assert not (tmp_path / 'out').exists()  # failures write nothing
    ok(run(offline_env, 'openwebtext', f'--dataset={tmp_path / "bad.jsonl"}', out, '--errors=replace'))
    texts = [Tokenizer.gpt2().decode(read_bin(tmp_path / 'out' / f'{split}.bin')) for split in ('train', 'val')]
    assert sorted(texts) == ['caf\ufffd<|endoftext|>', 'fine<|endoftext|>']


def test_openwebtext_hub_offline_is_one_quick_line(offline_env, tmp_path):
    # no network: an endpoint that refuses connections stands in for it
    # (set to 0, not dropped: the test process's own environment, which scripts inherit, has them at 1)
    env = {**offline_env, 'HF_HUB_OFFLINE': '0', 'HF_DATASETS_OFFLINE': '0'}
    result = run(env, 'openwebtext', f'--out_dir={tmp_path}', extra_env={'HF_ENDPOINT': 'http://127.0.0.1:9'})
    assert 'cannot reach 127.0.0.1' in result.stderr  # the quick probe answered, not datasets' retries
    assert_one_line_error(result, "'openwebtext'", '--dataset=<folder or glob')
    assert_one_line_error(run(offline_env, 'openwebtext', f'--out_dir={tmp_path}'),
                          "'openwebtext'", '--dataset=<folder or glob')


def test_a_hub_loading_script_is_one_line_with_the_way_out(monkeypatch):
    # datasets >= 4 refuses loading scripts, as the hub's openwebtext long was (nanoGPT #633); any other
    # RuntimeError inside datasets is a bug somewhere and keeps its traceback
    import datasets

    def refuse(path, **kwargs):
        raise RuntimeError(f"Dataset scripts are no longer supported, but found {path}.py")
    monkeypatch.setattr(datasets, 'load_dataset', refuse)
    with pytest.raises(UserError, match=r"'openwebtext' on the Hugging Face hub is a loading script.*datasets<4"):
        common.load_hub('openwebtext', num_proc=1)

    def crash(path, **kwargs):
        raise RuntimeError("something else")
    monkeypatch.setattr(datasets, 'load_dataset', crash)
    with pytest.raises(RuntimeError, match='something else'):
        common.load_hub('openwebtext')
