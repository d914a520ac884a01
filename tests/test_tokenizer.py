"""tokenizer.py: GPT-2 BPE offline (and equal to tiktoken's own when that loads), char vocabularies, for_dataset."""
import hashlib
import json
import os
import pickle
import random
import socket

import numpy as np
import pytest
import tiktoken
import tiktoken.load

import tokenizer
from configurator import UserError
from tokenizer import GPT2_ENCODER_JSON, Tokenizer, dataset_dir, for_dataset, get_gpt2_encoding

SHAKESPEARE = os.path.join(tokenizer.DATA_DIR, 'shakespeare_char', 'input.txt')


@pytest.fixture(scope='module')
def shakespeare():
    with open(SHAKESPEARE, encoding='utf-8') as f:
        return f.read()


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """tiktoken with an empty cache and no network: the fallback must build GPT-2 from encoder.json.
    Yields the download attempts made. Each attempt also fails, but get_gpt2_encoding catches errors from
    tiktoken and falls back, so a test must check the list stays empty: a failed attempt is the slow one
    (tiktoken's requests.get has no timeout) that the offline path exists to avoid."""
    monkeypatch.setenv('TIKTOKEN_CACHE_DIR', str(tmp_path / 'empty-tiktoken-cache'))
    attempts = []

    def refuse(what):
        def fail(*args, **kwargs):
            attempts.append((what, args))
            raise ConnectionError(f"offline test: {what}{args}")
        return fail
    # tiktoken fetches every uncached file through read_file; below it, any other client resolves a name
    # and connects a socket
    monkeypatch.setattr(tiktoken.load, 'read_file', refuse('tiktoken.load.read_file'))
    monkeypatch.setattr(socket, 'getaddrinfo', refuse('socket.getaddrinfo'))
    monkeypatch.setattr(socket.socket, 'connect', refuse('socket.socket.connect'))
    monkeypatch.setattr(socket.socket, 'connect_ex', refuse('socket.socket.connect_ex'))
    get_gpt2_encoding.cache_clear()
    yield attempts
    get_gpt2_encoding.cache_clear()


@pytest.fixture(scope='module')
def gpt2_offline():
    """The offline build, whatever the machine's tiktoken cache holds."""
    return Tokenizer('gpt2', 50257, eot_token=50256, encoding=tokenizer.gpt2_encoding_offline())


def test_offline_gpt2_hello_world(offline):
    tok = Tokenizer.gpt2()
    assert offline == []  # built without trying the network
    assert tok.encoding is not tiktoken.registry.ENCODINGS.get('gpt2')  # the offline build, not tiktoken's own
    assert (tok.name, tok.vocab_size, tok.eot_token) == ('gpt2', 50257, 50256)
    assert tok.encode("Hello world") == [15496, 995]
    assert tok.decode([15496, 995]) == "Hello world"


def test_offline_gpt2_with_corrupt_cache_does_not_download(offline, tmp_path):
    cache = tmp_path / 'empty-tiktoken-cache'
    cache.mkdir()
    for url in tokenizer._TIKTOKEN_GPT2_FILES:
        (cache / hashlib.sha1(url.encode()).hexdigest()).write_bytes(b'not the file')
    assert not tokenizer._tiktoken_gpt2_cached()
    assert Tokenizer.gpt2().encode("Hello world") == [15496, 995]
    assert offline == []


def test_offline_gpt2_shakespeare_counts_and_roundtrip(gpt2_offline, shakespeare):
    ids = gpt2_offline.encode(shakespeare)
    assert len(ids) == 338_025
    n = len(shakespeare)
    train, val = shakespeare[:int(n * 0.9)], shakespeare[int(n * 0.9):]
    assert (len(gpt2_offline.encode(train)), len(gpt2_offline.encode(val))) == (301_966, 36_059)
    assert gpt2_offline.decode(ids) == shakespeare
    assert gpt2_offline.decode(np.array(ids, dtype=np.uint16)) == shakespeare  # arrays decode like lists


def random_unicode(rng, n):
    # every plane that matters: ASCII, Latin-1, CJK, emoji, combining marks, odd whitespace, controls
    ranges = [(0x20, 0x7e), (0x00, 0x1f), (0xa0, 0x24f), (0x300, 0x36f), (0x400, 0x4ff), (0x4e00, 0x9fff),
              (0x1f300, 0x1faff), (0x2000, 0x206f), (0xe000, 0xf8ff), (0x10000, 0x10ffff)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        c = rng.randint(lo, hi)
        out.append(chr(c) if not 0xd800 <= c <= 0xdfff else ' ')  # lone surrogates are not text
    return ''.join(out)


def test_offline_gpt2_roundtrip_random_unicode(gpt2_offline):
    rng = random.Random(0)
    for _ in range(300):
        s = random_unicode(rng, rng.randint(0, 60))
        assert gpt2_offline.decode(gpt2_offline.encode(s)) == s
    s = "say <|endoftext|> plainly"  # ordinary encoding: the special token's text is just text
    assert 50256 not in gpt2_offline.encode(s) and gpt2_offline.decode(gpt2_offline.encode(s)) == s


def test_shipped_vocabulary_is_the_one_tiktoken_downloads():
    # the shipped file is re-serialised; its content, dumped the way OpenAI's file is, has the sha256
    # tiktoken checks its own download of encoder.json against
    with open(GPT2_ENCODER_JSON, encoding='utf-8') as f:
        vocab = json.load(f)
    assert len(vocab) == 50_257 and vocab['<|endoftext|>'] == 50256
    expected = tokenizer._TIKTOKEN_GPT2_FILES['https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json']
    assert hashlib.sha256(json.dumps(vocab).encode()).hexdigest() == expected


def test_split_pattern_is_tiktokens():
    openai_public = pytest.importorskip('tiktoken_ext.openai_public')
    assert tokenizer.GPT2_PATTERN == openai_public.r50k_pat_str


def test_agrees_with_tiktokens_own_gpt2(gpt2_offline, shakespeare):
    get_gpt2_encoding.cache_clear()
    if not tokenizer._tiktoken_gpt2_cached():
        pytest.skip("tiktoken's own gpt2 files are not in its cache here (they need a download)")
    own = tiktoken.get_encoding('gpt2')
    assert own.encode_ordinary(shakespeare) == gpt2_offline.encode(shakespeare)
    rng = random.Random(1)
    for _ in range(100):
        s = random_unicode(rng, 40)
        assert own.encode_ordinary(s) == gpt2_offline.encode(s)
    assert get_gpt2_encoding() is own  # and the cached files are what get_gpt2_encoding uses


def test_gpt2_decode_out_of_range(gpt2_offline):
    with pytest.raises(UserError, match='out of range'):
        gpt2_offline.decode([15496, 50257])


def test_char_vocabulary(shakespeare):
    tok = Tokenizer.char_from_text(shakespeare)
    assert (tok.name, tok.vocab_size, tok.eot_token) == ('char', 65, None)
    assert tok.meta['itos'][0] == '\n' and tok.meta['stoi']['z'] == 64  # ids in sorted character order
    assert tok.decode(tok.encode(shakespeare)) == shakespeare
    with pytest.raises(UserError, match='out of range'):
        tok.decode([3, 65])
    with pytest.raises(UserError, match='out of range'):
        tok.decode([-1])
    assert tok.encode('a€b') == tok.encode('a b')  # a character it lacks reads as a space (the export's unk)
    with pytest.raises(UserError, match='not in this 65-character vocabulary'):
        tok.encode('€', strict=True)
    no_space = Tokenizer.char_from_text('ba')
    assert no_space.unknown_char == 'a' and no_space.encode('b?') == [1, 0]


def test_from_meta_and_for_dataset(tmp_path, monkeypatch):
    tok = Tokenizer.char_from_text('hello world')
    (tmp_path / 'chars').mkdir()
    with open(tmp_path / 'chars' / 'meta.pkl', 'wb') as f:
        pickle.dump(tok.meta, f)
    (tmp_path / 'bpe').mkdir()
    monkeypatch.chdir(tmp_path)  # resolution must not depend on the cwd
    repo = os.path.dirname(tokenizer.__file__)
    assert dataset_dir('shakespeare_char') == os.path.join(repo, 'data', 'shakespeare_char')
    loaded = for_dataset(str(tmp_path / 'chars'))  # an absolute path is taken as is
    assert loaded.name == 'char' and loaded.decode(loaded.encode('world hello')) == 'world hello'
    assert for_dataset(str(tmp_path / 'bpe')).name == 'gpt2'
    with open(tmp_path / 'bad.pkl', 'wb') as f:
        pickle.dump({'vocab_size': 3}, f)
    with pytest.raises(UserError, match='not a character vocabulary'):
        Tokenizer.from_meta(tmp_path / 'bad.pkl')


def test_same_as_compares_what_the_ids_mean(gpt2_offline):
    abc, abd = Tokenizer.char_from_text('abc'), Tokenizer.char_from_text('abd')
    assert abc.vocab_size == abd.vocab_size == 3
    assert abc.same_as(Tokenizer.char_from_text('cab')) and not abc.same_as(abd)  # same size, other characters
    assert Tokenizer.gpt2().same_as(Tokenizer.gpt2()) and not abc.same_as(Tokenizer.gpt2())
