"""README.md is the manual: short, its commands real, its figures on record in BENCHMARKS.md. Reads files only."""
import ast
import os
import re
import shlex

import pytest

from conftest import REPO

README = os.path.join(REPO, 'README.md')
MAX_LINES = 350


def read(name):
    with open(os.path.join(REPO, name), encoding='utf-8') as f:
        return f.read()


def code_blocks(text):
    """The fenced ``` blocks of a markdown text as (language, body)."""
    return re.findall(r'^```(\w*)\n(.*?)^```', text, flags=re.S | re.M)


def command_lines(text):
    """Every command of the README's shell blocks, one list of words each: comments dropped, `&&` chains split."""
    commands = []
    for lang, body in code_blocks(text):
        if lang not in ('sh', 'bash', ''):
            continue
        for line in body.splitlines():
            words = shlex.split(line, comments=True)
            while words:
                cut = words.index('&&') if '&&' in words else len(words)
                if words[:cut]:
                    commands.append(words[:cut])
                words = words[cut + 1:]
    return commands


def script_settings(path):
    """A script's settings as configurator.configure sees them: the names the script assigns before it calls
    configure(globals()), at the top level or, where a script keeps them there, inside `if __name__ == ...`."""
    tree = ast.parse(read(path))
    settings = set()

    def calls_configure(node):
        return any(isinstance(n, ast.Call) and getattr(n.func, 'id', getattr(n.func, 'attr', None)) == 'configure'
                   for n in ast.walk(node))

    def collect(body):
        for node in body:
            if calls_configure(node) and not isinstance(node, ast.If):
                return True
            if isinstance(node, ast.If) and 'name' in ast.dump(node.test) and collect(node.body):
                return True
            if isinstance(node, (ast.Assign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                settings.update(t.id for t in targets if isinstance(t, ast.Name) and not t.id.startswith('_'))
        return False

    assert collect(tree.body), f"{path} never calls configure(): not a configurable script"
    return settings


def split_torchrun(words):
    """The script and its arguments of `torchrun [torchrun options] script.py args...`."""
    for i, word in enumerate(words[1:], 1):
        if word.endswith('.py'):
            return words[i:]
    raise AssertionError(f"no script in {' '.join(words)}")


def test_readme_is_a_short_manual():
    with open(README, encoding='utf-8') as f:
        assert len(f.readlines()) <= MAX_LINES


@pytest.mark.parametrize('page', ['README.md', *sorted(f'docs/{name}' for name in os.listdir(os.path.join(REPO, 'docs'))
                                                  if name.endswith('.md'))])
def test_readme_commands_name_real_scripts_settings_and_configs(page):
    """Also the pages under docs/, which the README links to."""
    commands = command_lines(read(page))
    checked = 0
    for words in commands:
        words = [w for w in words if not re.fullmatch(r'[A-Z_]+=\S*', w)]  # VAR=value before the command
        if words[0] == 'torchrun':
            words = split_torchrun(words)
        elif words[0] == 'python' and words[1:2] != ['-m']:
            words = words[1:]
        else:
            continue  # pip, python -m pytest, ruff, ...: other tools' commands
        script, args = words[0], words[1:]
        assert os.path.isfile(os.path.join(REPO, script)), f"{page} runs {script}, which does not exist"
        settings = script_settings(script)
        for arg in args:
            if arg.startswith('--'):
                key = arg[2:].partition('=')[0]
                assert key in settings, f"{page} passes --{key} to {script}, which has no such setting"
            else:  # a config file, as configurator.resolve_config_path finds it
                name = arg if arg.endswith('.py') else os.path.join('config', arg + '.py')
                assert os.path.isfile(os.path.join(REPO, name)), f"{page} names config {arg}, which does not exist"
                config = ast.parse(read(name))
                for node in config.body:
                    if isinstance(node, ast.Assign):
                        for target in node.targets:
                            assert target.id in settings, f"{name} sets {target.id}, not a setting of {script}"
        checked += 1
    assert checked >= (30 if page == 'README.md' else 1), checked  # the parser found the page's commands


def test_readme_command_parser_catches_mistakes(tmp_path):
    """The check above fails on a wrong script, key or config (so that its passing means something)."""
    words = command_lines("```sh\npython train.py config/train_gpt2.py --batch_size=2 && python sample.py\n"
                          "torchrun --standalone --nproc_per_node=8 eval_tasks.py --task=bpb  # scored\n```\n")
    assert words == [['python', 'train.py', 'config/train_gpt2.py', '--batch_size=2'], ['python', 'sample.py'],
                     ['torchrun', '--standalone', '--nproc_per_node=8', 'eval_tasks.py', '--task=bpb']]
    assert split_torchrun(words[2]) == ['eval_tasks.py', '--task=bpb']
    assert {'batch_size', 'init_from', 'dataset'} <= script_settings('train.py')
    assert 'batch_siz' not in script_settings('train.py') and 'device' not in script_settings('data/text/prepare.py')
    assert {'task', 'init_from'} <= script_settings('eval_tasks.py')  # settings inside `if __name__ == '__main__'`
    assert {'input', 'tokenizer', 'out_dir'} <= script_settings('data/text/prepare.py')


# A figure: a number with a decimal point (1.8531, 0.5M), or a number with a unit of time, size, rate or ratio
# (28.4 s, 40 GB, 31.14%, 100x, 15.4 ms/iter). Counts, sizes of models and dates are not figures.
UNITS = r'(?:ms/iter|tokens/s|[GT]FLOP/s|ms|s|min|days?|GB|GiB|MiB|%)'
FIGURE = re.compile(rf'(?<![\w.])(\d[\d,]*(?:\.\d+)?)(?:(\s?{UNITS})(?![\w/])|(x)\b)|(?<![\w.])(\d+\.\d+)(?![\d.])')
VERSION = re.compile(r'(?:Python|torch|datasets)\s?[<=>]*\s?$')


def figures(text):
    """The figures of a markdown text's prose: code blocks and inline code (commands, settings) are left out,
    and so are version numbers (Python 3.11)."""
    text = re.sub(r'^```.*?^```', '', text, flags=re.S | re.M)
    text = re.sub(r'`[^`]*`', '', text)
    text = re.sub(r'\]\([^)]*\)', ']', text)  # link targets
    found = []
    for m in FIGURE.finditer(text):
        if VERSION.search(text[max(0, m.start() - 12):m.start()]):
            continue
        number = m.group(1) or m.group(4)
        unit = (m.group(2) or m.group(3) or '').strip()
        found.append((number, unit))
    return found


def on_record(number, unit, record):
    """The figure as the notebook writes it: the same number, and the same unit after it where it has one
    (a space between them or not)."""
    pattern = rf'(?<![\d.]){re.escape(number)}(?![\d]|\.\d)'
    if unit:
        pattern += rf'\s?{re.escape(unit)}'
    return re.search(pattern, record) is not None


def test_readme_figures_are_on_record_in_benchmarks():
    """Every figure of README.md appears in BENCHMARKS.md, where its command, date and machine are. The rule: in
    the README's prose (code blocks, inline code and link targets left out), a figure is a number with a decimal
    point, or a number with a unit (s, ms, min, days, GB, GiB, MiB, %, x, ms/iter, tokens/s, GFLOP/s, TFLOP/s), a
    version number excepted; BENCHMARKS.md must hold the same number, with the same unit after it where it has one.
    Counts (1500 steps, 8 GPUs), model sizes (124M) and dates are not figures."""
    record = read('BENCHMARKS.md')
    found = figures(read('README.md'))
    assert len(found) >= 20, found  # the extraction works on the README as written
    missing = sorted({f'{n}{" " + u if u else ""}' for n, u in found if not on_record(n, u, record)})
    assert not missing, f"figures in README.md that BENCHMARKS.md does not record: {missing}"


def test_figure_extraction():
    text = ("Trains in **28.4 s** at 15.4 ms/iter to val 1.8531 (31.14%, 100x slower, 40GB, 1.840-1.858); "
            "Python 3.11, `--lr=3.5` and 2026-11-24, 8 GPUs, 124M, 1e-4.\n```sh\npython train.py --x=9.9\n```\n")
    assert figures(text) == [('28.4', 's'), ('15.4', 'ms/iter'), ('1.8531', ''), ('31.14', '%'), ('100', 'x'),
                             ('40', 'GB'), ('1.840', ''), ('1.858', '')]
    assert on_record('28.4', 's', 'wall 28.4 / 27.8 s; 28.4 s') and not on_record('28.4', 's', 'wall 128.4 s')
    assert not on_record('1.85', '', 'val 1.8531')
