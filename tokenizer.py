"""
One encode/decode surface for everything that turns text into token ids or back: the prepare
scripts, sample.py and the evaluators. Three kinds of vocabulary:

- 'gpt2': GPT-2's byte-level BPE through tiktoken (50,257 tokens, end-of-text = 50256)
- 'char': nanoGPT's character-level vocabularies, stored as data/<name>/meta.pkl
          ({'vocab_size': int, 'itos': {id: char}, 'stoi': {char: id}})
- 'bpe':  a byte-level BPE trained on the dataset's own text by Hugging Face `tokenizers` (train_bpe), stored as
          data/<name>/tokenizer.json: GPT-2's split pattern and byte alphabet, its own merges, and the
          end-of-text token '<|endoftext|>' (id 0)

    from tokenizer import Tokenizer, for_dataset
    tok = Tokenizer.gpt2()
    tok.encode("Hello world")            # [15496, 995]
    tok.decode([15496, 995])             # 'Hello world'
    tok = for_dataset('shakespeare_char')  # the vocabulary data/shakespeare_char/ was prepared with

Working offline: tiktoken.get_encoding("gpt2") downloads vocab.bpe and encoder.json on first use
(with requests and no timeout, so with no network it fails slowly or hangs). We therefore use
tiktoken's own encoding only when both files already sit in its cache, and otherwise build the very
same encoding from the copy of GPT-2's encoder.json in data/gpt2/: its ids are the BPE merge ranks,
which together with GPT-2's split pattern is all tiktoken needs.
"""
import functools
import hashlib
import json
import os
import pickle
import tempfile

import tiktoken

from configurator import UserError

REPO_DIR = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(REPO_DIR, 'data')
GPT2_ENCODER_JSON = os.path.join(DATA_DIR, 'gpt2', 'encoder.json')
GPT2_EOT = 50256  # <|endoftext|>, GPT-2's last id
EOT_TEXT = '<|endoftext|>'
META_FILE, BPE_FILE = 'meta.pkl', 'tokenizer.json'  # beside a dataset's train.bin: a char vocabulary, a trained BPE
VOCAB_FILES = {'char': META_FILE, 'bpe': BPE_FILE}
MIN_BPE_VOCAB = 257  # a byte-level BPE holds at least the 256 bytes and the end-of-text token

# GPT-2's split pattern, in the faster possessive form tiktoken itself uses for 'gpt2'. The original is
#   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""

# the files tiktoken's 'gpt2' loads, and the sha256 it checks them against
_TIKTOKEN_GPT2_FILES = {
    'https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe':
        '1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5',
    'https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json':
        '196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783',
}


# -----------------------------------------------------------------------------
# GPT-2 BPE

def _tiktoken_gpt2_cached():
    """True when tiktoken can build 'gpt2' from its cache alone, i.e. without touching the network.
    Mirrors tiktoken.load.read_file_cached: cache dir from TIKTOKEN_CACHE_DIR / DATA_GYM_CACHE_DIR /
    <tmp>/data-gym-cache, file name sha1(url), content checked against the expected sha256."""
    cache_dir = os.environ.get('TIKTOKEN_CACHE_DIR', os.environ.get('DATA_GYM_CACHE_DIR'))
    if cache_dir is None:
        cache_dir = os.path.join(tempfile.gettempdir(), 'data-gym-cache')
    if not cache_dir:  # '' disables tiktoken's cache: it would download every time
        return False
    for url, sha256 in _TIKTOKEN_GPT2_FILES.items():
        path = os.path.join(cache_dir, hashlib.sha1(url.encode()).hexdigest())
        try:
            with open(path, 'rb') as f:
                if hashlib.sha256(f.read()).hexdigest() != sha256:
                    return False
        except OSError:
            return False
    return True


@functools.lru_cache(maxsize=None)
def _gpt2_byte_decoder():
    """GPT-2's map from the stand-in characters of encoder.json back to raw bytes: the 188 printable
    Latin-1 bytes stand for themselves, the other 68 (controls, space, ...) were moved to chr(256 + n)
    in byte order so that every token is a printable string."""
    printable = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1), *range(ord('®'), ord('ÿ') + 1)]
    decoder = {chr(b): b for b in printable}
    others = [b for b in range(256) if chr(b) not in decoder]
    decoder.update({chr(256 + n): b for n, b in enumerate(others)})
    return decoder


def gpt2_encoding_offline(encoder_json=GPT2_ENCODER_JSON):
    """GPT-2's encoding built from encoder.json alone ({token string: id}, 50,257 entries)."""
    if not os.path.isfile(encoder_json):
        raise UserError(f"GPT-2 vocabulary {encoder_json} is missing and tiktoken's gpt2 files are not "
                        f"cached; restore it from the repository (git checkout -- data/gpt2/encoder.json)")
    with open(encoder_json, encoding='utf-8') as f:
        vocab = json.load(f)
    byte_of = _gpt2_byte_decoder()
    eot = vocab.pop('<|endoftext|>')
    ranks = {bytes(byte_of[c] for c in token): rank for token, rank in vocab.items()}
    assert eot == GPT2_EOT and sorted(ranks.values()) == list(range(GPT2_EOT)), 'not GPT-2 encoder.json'
    return tiktoken.Encoding(name='gpt2', pat_str=GPT2_PATTERN, mergeable_ranks=ranks,
                             special_tokens={'<|endoftext|>': GPT2_EOT}, explicit_n_vocab=GPT2_EOT + 1)


@functools.lru_cache(maxsize=None)
def get_gpt2_encoding():
    """A tiktoken Encoding for GPT-2: tiktoken's own when its files are cached, else the identical
    offline one from data/gpt2/encoder.json. Never waits on the network."""
    if _tiktoken_gpt2_cached():
        try:
            return tiktoken.get_encoding('gpt2')
        except Exception:  # a cache we misread: the offline build is the same encoding
            pass
    return gpt2_encoding_offline()


# -----------------------------------------------------------------------------
# a byte-level BPE trained on your own text (Hugging Face tokenizers)

def _byte_level(rust):
    """rust, a tokenizers.Tokenizer holding a BPE model, set up as this repo's byte-level BPE: no normalizer, GPT-2's
    split pattern, then every byte as one of GPT-2's 256 stand-in characters (so any text encodes, with no unknown
    token), bytes back to text on decode (a cut multi-byte character decodes as U+FFFD), no post-processing, and
    '<|endoftext|>' in text read as ordinary text (tiktoken's encode_ordinary)."""
    from tokenizers import decoders, pre_tokenizers
    rust.normalizer = None
    rust.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    rust.decoder = decoders.ByteLevel()
    rust.post_processor = None
    rust.no_padding()
    rust.no_truncation()
    rust.encode_special_tokens = True
    return rust


def train_bpe(texts, vocab_size):
    """A byte-level BPE of vocab_size tokens (the end-of-text token, the 256 bytes, then merges in the order
    learnt) trained on texts, an iterable of str; fewer when the text runs out of pairs to merge. The trainer
    breaks ties between equally frequent pairs by the pair itself, so the same texts give the same tokenizer."""
    from tokenizers import Tokenizer as RustTokenizer
    from tokenizers import models, pre_tokenizers, trainers
    if not MIN_BPE_VOCAB <= vocab_size:
        raise UserError(f"--vocab_size={vocab_size} is too small for a byte-level BPE: it needs at least "
                        f"{MIN_BPE_VOCAB} (the 256 bytes and the end-of-text token), a few hundred or more")
    rust = _byte_level(RustTokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOT_TEXT], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())  # all 256 bytes, seen or not
    rust.train_from_iterator(texts, trainer)
    return Tokenizer.bpe(rust.to_str())


def bpe_identity(spec):
    """What decides a byte-level BPE's ids, from its tokenizer.json dict: the vocabulary, the merges in order and
    the added tokens. Settings around them (the exported file's post-processor, flags tokenizers' versions
    write differently, merges as 'a b' or [a, b]) are left out."""
    merges = [tuple(m.split(' ', 1)) if isinstance(m, str) else tuple(m) for m in spec['model']['merges']]
    added = sorted((t['id'], t['content']) for t in spec.get('added_tokens', []))
    return spec['model']['vocab'], merges, added


# -----------------------------------------------------------------------------
# one surface for all kinds

class Tokenizer:
    """encode(text) -> list[int] (ordinary: '<|endoftext|>' in text is just text), decode(ids) -> str,
    vocab_size, eot_token (50256 for GPT-2, 0 for a trained BPE, None for char), name ('gpt2', 'char' or 'bpe'),
    meta (char only), json (bpe only: its tokenizer.json text)."""

    def __init__(self, name, vocab_size, eot_token=None, encoding=None, meta=None, json=None):
        self.name, self.vocab_size, self.eot_token = name, vocab_size, eot_token
        self.encoding = encoding  # tiktoken Encoding for 'gpt2', tokenizers.Tokenizer for 'bpe'
        self.meta = meta          # {'vocab_size', 'itos', 'stoi'} for 'char'
        self.json = json          # tokenizer.json text for 'bpe'

    @classmethod
    def gpt2(cls):
        enc = get_gpt2_encoding()
        return cls('gpt2', enc.n_vocab, eot_token=enc.eot_token, encoding=enc)

    @classmethod
    def char_from_text(cls, text):
        """A character vocabulary of every distinct character in text, ids in sorted order (as nanoGPT)."""
        chars = sorted(set(text))
        meta = {'vocab_size': len(chars), 'itos': dict(enumerate(chars)), 'stoi': {c: i for i, c in enumerate(chars)}}
        return cls('char', len(chars), meta=meta)

    @classmethod
    def bpe(cls, text, where='tokenizer.json'):
        """The byte-level BPE of a tokenizer.json text (train_bpe's, or one export.py wrote)."""
        from tokenizers import Tokenizer as RustTokenizer
        try:
            rust = _byte_level(RustTokenizer.from_str(text))
            spec = json.loads(text)
            bpe_identity(spec)
        except Exception as e:  # not JSON, or not a tokenizers BPE
            raise UserError(f"{where} is not a byte-level BPE tokenizer.json ({type(e).__name__}: "
                            f"{str(e).splitlines()[0] if str(e) else ''}); re-run the dataset's prepare.py") from None
        if spec['model'].get('type') != 'BPE' or rust.token_to_id(EOT_TEXT) is None:
            raise UserError(f"{where} is not a byte-level BPE with an {EOT_TEXT} token, as data/text/prepare.py "
                            f"--tokenizer=bpe trains one; re-run it")
        return cls('bpe', rust.get_vocab_size(with_added_tokens=True), eot_token=rust.token_to_id(EOT_TEXT),
                   encoding=rust, json=text)

    @property
    def model_vocab_size(self):
        """The rows a new model's embedding and head get: a character vocabulary's own size (nanoGPT's), a BPE's
        padded up to a multiple of 64 for faster matmuls (GPT-2's 50,257 -> 50,304). No text encodes to the
        padding ids, and sampling never picks them (GPT.generate_stream's vocab_size)."""
        return self.vocab_size if self.name == 'char' else -(-self.vocab_size // 64) * 64

    def same_as(self, other):
        """True when both map ids to the same text: the same kind and size, the same characters (char), the
        same vocabulary, merges and end-of-text token (bpe)."""
        if (self.name, self.vocab_size) != (other.name, other.vocab_size):
            return False
        if self.name == 'char':
            return self.meta['itos'] == other.meta['itos']
        if self.name == 'bpe':
            return self.fingerprint == other.fingerprint
        return True

    @functools.cached_property
    def fingerprint(self):
        """A trained BPE's short hash of bpe_identity: names it in messages and compares it (same_as)."""
        return hashlib.sha256(json.dumps(bpe_identity(json.loads(self.json))).encode()).hexdigest()[:12]

    @classmethod
    def from_meta(cls, path):
        """The character vocabulary saved in a nanoGPT meta.pkl."""
        with open(path, 'rb') as f:
            meta = pickle.load(f)
        if not isinstance(meta, dict) or not {'vocab_size', 'itos', 'stoi'} <= meta.keys():
            raise UserError(f"{path} is not a character vocabulary (needs vocab_size, itos, stoi); "
                            f"re-run the dataset's prepare.py")
        return cls('char', meta['vocab_size'], meta=meta)

    @classmethod
    def from_file(cls, path):
        """The trained BPE saved in a dataset's tokenizer.json."""
        with open(path, encoding='utf-8') as f:
            return cls.bpe(f.read(), where=path)

    def state(self):
        """What a checkpoint keeps to rebuild this tokenizer with no data/ folder beside it: plain Python values
        (GPT-2 BPE by name; a character vocabulary with its meta.pkl dict, characters and any task tag; a trained
        BPE with its tokenizer.json text)."""
        if self.name == 'bpe':
            return {'name': 'bpe', 'json': self.json}
        return {'name': 'gpt2'} if self.name == 'gpt2' else {'name': 'char', 'meta': self.meta}

    @classmethod
    def from_state(cls, state):
        """The tokenizer Tokenizer.state() describes."""
        if state.get('name') == 'gpt2':
            return cls.gpt2()
        if state.get('name') == 'char' and {'vocab_size', 'itos', 'stoi'} <= state.get('meta', {}).keys():
            return cls('char', state['meta']['vocab_size'], meta=state['meta'])
        if state.get('name') == 'bpe' and isinstance(state.get('json'), str):
            return cls.bpe(state['json'], where="the checkpoint's tokenizer")
        raise UserError(f"unknown tokenizer record {str(state)[:200]}: expected {{'name': 'gpt2'}}, a char vocabulary "
                        f"or a trained BPE")

    @property
    def unknown_char(self):
        """What a character vocabulary encodes a character it lacks as: a space, or its first character if it has
        none. No id is spare (the model has one row per character), so an unknown character becomes a known one;
        the exported tokenizer.json (hf.save_tokenizer) names the same one as its unknown token."""
        return ' ' if ' ' in self.meta['stoi'] else self.meta['itos'][0]

    def unknown_chars(self, text):
        """The distinct characters of text this vocabulary lacks, in order of appearance ('' for a BPE, which reads any text)."""
        return '' if self.name != 'char' else ''.join(dict.fromkeys(c for c in text if c not in self.meta['stoi']))

    def encode(self, text, strict=False):
        """Token ids of text. A character vocabulary encodes a character it lacks as unknown_char (as the exported
        tokenizer does), or with strict raises a UserError (for text that must stay exact: training data, tasks)."""
        if self.name == 'gpt2':
            return self.encoding.encode_ordinary(text)
        if self.name == 'bpe':
            return self.encoding.encode(text, add_special_tokens=False).ids
        stoi = self.meta['stoi']
        unknown = self.unknown_chars(text)
        if unknown and strict:
            raise UserError(f"character {unknown[0]!r} is not in this {self.vocab_size}-character vocabulary")
        unk = stoi[self.unknown_char]
        return [stoi.get(c, unk) for c in text]

    def decode(self, ids):
        ids = [int(i) for i in ids]  # lists, numpy arrays and tensors alike
        bad = [i for i in ids if not 0 <= i < self.vocab_size]
        if bad:
            raise UserError(f"token id {bad[0]} is out of range for the {self.name} vocabulary "
                            f"of {self.vocab_size} tokens (ids 0..{self.vocab_size - 1})")
        if self.name == 'gpt2':
            return self.encoding.decode(ids)  # a cut multi-byte character decodes as U+FFFD
        if self.name == 'bpe':
            return self.encoding.decode(ids, skip_special_tokens=False)  # the same, and end-of-text as its text
        itos = self.meta['itos']
        return ''.join(itos[i] for i in ids)

    def id_bytes(self, i):
        """The UTF-8 bytes token id i stands for (an end-of-text token: the bytes of its text)."""
        if self.name == 'gpt2':
            return self.encoding.decode_single_token_bytes(i)
        if self.name == 'bpe':
            token = self.encoding.id_to_token(i)
            if i == self.eot_token:
                return token.encode('utf-8')
            byte_of = _gpt2_byte_decoder()  # tokenizers' ByteLevel writes bytes as GPT-2's stand-in characters
            return bytes(byte_of[c] for c in token)
        return self.meta['itos'][i].encode('utf-8')

    def __repr__(self):
        return (f"Tokenizer('bpe', vocab_size={self.vocab_size}, fingerprint={self.fingerprint})" if self.name == 'bpe'
                else f"Tokenizer({self.name!r}, vocab_size={self.vocab_size})")


# -----------------------------------------------------------------------------
# the one place that maps a dataset name to its folder and vocabulary

def dataset_dir(dataset):
    """data/<dataset>/ under the repo root, whatever the cwd (an absolute path is taken as is)."""
    return os.path.join(DATA_DIR, dataset)


def for_dataset(dataset):
    """The tokenizer data/<dataset>/ was prepared with: the char vocabulary in its meta.pkl, the BPE trained on
    it in its tokenizer.json, GPT-2 BPE when it has neither."""
    meta_path, bpe_path = (os.path.join(dataset_dir(dataset), name) for name in (META_FILE, BPE_FILE))
    if os.path.exists(meta_path) and os.path.exists(bpe_path):
        raise UserError(f"{dataset_dir(dataset)} holds both a {META_FILE} and a {BPE_FILE}, so which vocabulary its "
                        f".bin files are in is unclear: re-run its prepare.py")
    if os.path.exists(meta_path):
        return Tokenizer.from_meta(meta_path)
    return Tokenizer.from_file(bpe_path) if os.path.exists(bpe_path) else Tokenizer.gpt2()
