"""data/fineweb/prepare.py on local files, as a user runs it: build-nanogpt's tokens ([eot] before each document)
and split (val = the first val_tokens tokens of the stream), one-line errors for bad input, and the hub path
with load_dataset stood in for. No network."""
import importlib.util
import json
import os
import random
import time

import numpy as np
import pytest

from conftest import assert_one_line_error, run_script
from data import common
from tokenizer import DATA_DIR, REPO_DIR, get_gpt2_encoding

SHAKESPEARE = os.path.join(DATA_DIR, 'shakespeare_char', 'input.txt')
SCRIPT = os.path.join(DATA_DIR, 'fineweb', 'prepare.py')
EOT = 50256


@pytest.fixture(scope='module')
def offline_env(tmp_path_factory):
    """An empty tiktoken cache (the offline GPT-2 build), Hugging Face offline with its cache in a temporary folder."""
    root = tmp_path_factory.mktemp('env')
    env = dict(os.environ, TIKTOKEN_CACHE_DIR=str(root / 'tiktoken'), HF_DATASETS_CACHE=str(root / 'hf'),
               HF_HUB_OFFLINE='1', HF_DATASETS_OFFLINE='1', HF_DATASETS_DISABLE_PROGRESS_BARS='1')
    env.pop('HF_ENDPOINT', None)
    return env


def run(env, *args, extra_env=None):
    """python data/fineweb/prepare.py args, from a directory that is not the repo."""
    return run_script(SCRIPT, *args, cwd=os.path.dirname(REPO_DIR), timeout=300, check=False,
                      env={**env, **(extra_env or {})})


def ok(result):
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-2000:])
    return result


def read_bin(path):
    return np.fromfile(path, dtype=np.uint16).tolist()


def make_documents(n, seed=0):
    """n web-page-like documents: Shakespeare lines, some unicode, an empty one, a literal '<|endoftext|>'."""
    with open(SHAKESPEARE, encoding='utf-8') as f:
        lines = f.read().splitlines()
    rng = random.Random(seed)
    docs = ['\n'.join(rng.choice(lines) for _ in range(rng.randint(1, 20))) for _ in range(n)]
    docs[2] = ('Caf\u00e9 \u2615, na\u00efve r\u00e9sum\u00e9, \u65e5\u672c\u8a9e, \U0001f600 '
               'and <|endoftext|> as plain text')
    docs[5] = ''
    return docs


def expected_ids(docs):
    """build-nanogpt's tokens, the obvious way: [50256] + encode_ordinary(text) for each document, in order."""
    enc = get_gpt2_encoding()
    return [i for doc in docs for i in [EOT] + enc.encode_ordinary(doc)]


@pytest.fixture(scope='module')
def jsonl_corpus(tmp_path_factory):
    docs = make_documents(120)
    folder = tmp_path_factory.mktemp('fineweb_jsonl')
    for k in range(3):  # part0, part1, part2: read in sorted path order, so the documents keep theirs
        with open(folder / f'part{k}.jsonl', 'w', encoding='utf-8') as f:
            for doc in docs[k * 40:(k + 1) * 40]:
                f.write(json.dumps({'text': doc, 'id': len(doc), 'score': 3.5}) + '\n')
    return folder, docs


def test_tokens_and_split_are_build_nanogpts(offline_env, tmp_path, jsonl_corpus):
    folder, docs = jsonl_corpus
    want = expected_ids(docs)
    # val_tokens at the end of the 10th document: val holds exactly the first 10 documents, train the other 110
    boundary = len(expected_ids(docs[:10]))
    ok(run(offline_env, f'--dataset={folder}', f'--val_tokens={boundary}', '--num_proc=2', '--shard_size=2000',
           f'--out_dir={tmp_path / "a"}'))
    val, train = read_bin(tmp_path / 'a' / 'val.bin'), read_bin(tmp_path / 'a' / 'train.bin')
    assert val == want[:boundary] and train == want[boundary:]
    enc = get_gpt2_encoding()
    assert enc.decode(val) == ''.join('<|endoftext|>' + d for d in docs[:10])
    assert enc.decode(train) == ''.join('<|endoftext|>' + d for d in docs[10:])
    assert val.count(EOT) == 10 and train.count(EOT) == 110  # the literal '<|endoftext|>' in docs[2] is text
    assert sorted(os.listdir(tmp_path / 'a')) == ['manifest.json', 'train.bin', 'val.bin']
    # val_tokens inside a document (as build-nanogpt's 100M-token val shard): the cut is exact, whatever the
    # number of workers and the size of the pieces they get
    mid = boundary + 7
    ok(run(offline_env, f'--dataset={folder}', f'--val_tokens={mid}', '--num_proc=1', f'--out_dir={tmp_path / "b"}'))
    assert read_bin(tmp_path / 'b' / 'val.bin') == want[:mid] and read_bin(tmp_path / 'b' / 'train.bin') == want[mid:]


def test_max_tokens_stops_the_stream_exactly(offline_env, tmp_path, jsonl_corpus):
    folder, docs = jsonl_corpus
    want = expected_ids(docs)
    result = ok(run(offline_env, f'--dataset={folder}', '--val_tokens=100', '--max_tokens=1234', '--num_proc=2',
                    '--shard_size=500', f'--out_dir={tmp_path}'))
    assert read_bin(tmp_path / 'val.bin') == want[:100] and read_bin(tmp_path / 'train.bin') == want[100:1234]
    assert 'val.bin has the first 100 tokens, train.bin the other 1,134' in result.stdout


@pytest.mark.parametrize('kind', ['parquet', 'save_to_disk'])
def test_other_local_formats(offline_env, tmp_path, kind):
    import datasets
    docs = make_documents(30, seed=1)
    corpus = tmp_path / 'corpus'
    if kind == 'parquet':  # as the hub's sample/10BT/*.parquet, with some of FineWeb-Edu's other columns
        corpus.mkdir()
        for k in range(2):
            part = docs[k * 15:(k + 1) * 15]
            datasets.Dataset.from_dict({'text': part, 'url': ['https://x'] * 15, 'score': [2.5] * 15}) \
                .to_parquet(str(corpus / f'{k:03d}_00000.parquet'))
        spec = str(corpus / '*.parquet')
    else:
        datasets.DatasetDict({'train': datasets.Dataset.from_dict({'text': docs})}).save_to_disk(str(corpus))
        spec = str(corpus)
    ok(run(offline_env, f'--dataset={spec}', '--val_tokens=50', '--num_proc=2', '--shard_size=300',
           f'--out_dir={tmp_path / "out"}'))
    want = expected_ids(docs)
    assert read_bin(tmp_path / 'out' / 'val.bin') == want[:50] and read_bin(tmp_path / 'out' / 'train.bin') == want[50:]


def test_bad_paths_and_settings_are_one_line(offline_env, tmp_path, jsonl_corpus):
    folder, docs = jsonl_corpus
    out = f'--out_dir={tmp_path / "out"}'
    assert_one_line_error(run(offline_env, f'--dataset={tmp_path / "nope"}', out), 'nope', 'no such file')
    (tmp_path / 'empty').mkdir()
    assert_one_line_error(run(offline_env, f'--dataset={tmp_path / "empty"}', out), 'no .txt')
    assert_one_line_error(run(offline_env, f'--dataset={folder}', '--max_tokens=10', '--val_tokens=10', out),
                          '--max_tokens=10', 'lower --val_tokens')
    assert_one_line_error(run(offline_env, '--val_token=5', out), 'did you mean val_tokens')
    # too little text for the val split asked for (the default, 100M tokens): nothing is written
    assert_one_line_error(run(offline_env, f'--dataset={folder}', out), 'all of them val', 'lower --val_tokens')
    assert not (tmp_path / 'out').exists()


def test_bad_files_are_one_line(offline_env, tmp_path):
    out = f'--out_dir={tmp_path / "out"}'
    (tmp_path / 'notext.jsonl').write_text('{"body": "a"}\n{"body": "b"}\n')
    assert_one_line_error(run(offline_env, f'--dataset={tmp_path / "notext.jsonl"}', out), "no 'text' column", 'body')
    (tmp_path / 'numbers.jsonl').write_text('{"text": 1}\n{"text": 2}\n')
    assert_one_line_error(run(offline_env, f'--dataset={tmp_path / "numbers.jsonl"}', out), 'int values, not strings')
    (tmp_path / 'latin1.jsonl').write_bytes(b'{"text": "fine"}\n{"text": "caf\xe9"}\n')
    assert_one_line_error(run(offline_env, f'--dataset={tmp_path / "latin1.jsonl"}', out),
                          'latin1.jsonl', 'byte offset 30', '--errors=replace')
    assert not (tmp_path / 'out').exists()  # the errors come up while streaming, yet leave nothing behind
    ok(run(offline_env, f'--dataset={tmp_path / "latin1.jsonl"}', '--val_tokens=2', '--errors=replace', out))
    want = expected_ids(['fine', 'caf\ufffd'])
    assert read_bin(tmp_path / 'out' / 'val.bin') == want[:2] and read_bin(tmp_path / 'out' / 'train.bin') == want[2:]


def test_hub_offline_is_one_quick_line(offline_env, tmp_path):
    # HF_HUB_OFFLINE set (as in offline_env): streaming cannot work at all, say so at once
    assert_one_line_error(run(offline_env, f'--out_dir={tmp_path}'), "'HuggingFaceFW/fineweb-edu'", 'needs the network',
                          '--dataset=<folder or glob')
    # online mode but no network: an endpoint that refuses connections stands in for it ('0' overrides the
    # HF_HUB_OFFLINE=1 that conftest puts in every test's environment)
    online = {'HF_HUB_OFFLINE': '0', 'HF_DATASETS_OFFLINE': '0', 'HF_ENDPOINT': 'http://127.0.0.1:9'}
    t0 = time.time()
    assert_one_line_error(run(offline_env, f'--out_dir={tmp_path}', extra_env=online),
                          'cannot reach 127.0.0.1', "'HuggingFaceFW/fineweb-edu'", '--dataset=<folder or glob')
    assert time.time() - t0 < 60
    assert os.listdir(tmp_path) == []


def test_hub_path_streams_sample_10bt(monkeypatch, tmp_path):
    """The online path, with load_dataset stood in for: the right dataset, config, split and streaming=True,
    and a stream with FineWeb-Edu's columns goes through the same pipeline."""
    import datasets
    spec = importlib.util.spec_from_file_location('fineweb_prepare', SCRIPT)
    prepare = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(prepare)  # the module only: its __main__ block does not run
    docs = make_documents(20, seed=2)
    calls = []

    def load_dataset(path, **kwargs):
        calls.append((path, kwargs))
        return datasets.Dataset.from_dict({'text': docs, 'id': [str(i) for i in range(20)],
                                           'token_count': [len(d) for d in docs]}).to_iterable_dataset()
    monkeypatch.setattr(datasets, 'load_dataset', load_dataset)
    monkeypatch.setattr(prepare, 'hub_offline', lambda: False)
    monkeypatch.setattr(prepare, 'probe_hub', lambda doing: None)
    monkeypatch.setattr(prepare, 'out_dir', str(tmp_path))
    monkeypatch.setattr(prepare, 'num_proc', 1)
    monkeypatch.setattr(prepare, 'val_tokens', 60)
    prepare.write_stream(*prepare.open_stream())
    assert calls == [('HuggingFaceFW/fineweb-edu', {'name': 'sample-10BT', 'split': 'train', 'streaming': True})]
    want = expected_ids(docs)
    assert read_bin(tmp_path / 'val.bin') == want[:60] and read_bin(tmp_path / 'train.bin') == want[60:]


def test_gpt2_ids_and_bounded_workers():
    enc = get_gpt2_encoding()
    texts = ['Hello world', '', None, 'caf\u00e9']
    assert common.gpt2_ids(texts, eot_before=True).tolist() == \
        [EOT, *enc.encode_ordinary('Hello world'), EOT, EOT, EOT, *enc.encode_ordinary('caf\u00e9')]
    assert common.gpt2_ids(texts).tolist() == \
        [*enc.encode_ordinary('Hello world'), EOT, EOT, EOT, *enc.encode_ordinary('caf\u00e9'), EOT]
    # the workers are fed as they finish: a stream of tasks is not read ahead into memory
    pulled = []

    def tasks():
        for i in range(1000):
            pulled.append(i)
            yield -i
    for num_proc in (1, 2):
        pulled.clear()
        gen = common.in_workers(abs, tasks(), num_proc)
        assert [next(gen) for _ in range(3)] == [0, 1, 2]
        assert len(pulled) <= 3 + 2 * num_proc
        gen.close()
