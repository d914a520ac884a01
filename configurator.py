"""
Configuration for every script, nanoGPT style: a script defines its settings as plain
globals, then calls

    from configurator import configure
    configure(globals())

which applies, in order, config files and --key=value overrides from the command line:

    python train.py config/train_gpt2.py --batch_size=32
    python train.py eval_gpt2_xl            # a bare name means config/eval_gpt2_xl.py

Values are parsed with ast.literal_eval (so --compile=False is a bool and --lr=3e-4 a
float); anything that does not parse is taken as a string (--device=cpu). Every key must
already exist in the script and keep its type: a typo or a wrong type is a one-line error,
not a silently ignored setting.

configure() also installs the repo's error convention: a UserError (raised by the repo's code
for a mistake in what the user asked for, with a message that says what to do) that reaches
the top of a script is printed as one line, `error: ...`, and the process exits with code 2.
A full disk, a quota or a read-only file system (files.py) is one such line too, wherever it happens.
Every other exception is a bug somewhere and keeps its full traceback.
"""
import ast
import atexit
import difflib
import os
import sys

REPO_DIR = os.path.dirname(os.path.abspath(__file__))


class UserError(Exception):
    """A mistake in the user's request (a config value, a path, a dataset, a checkpoint), not in the code:
    the message says what is wrong and what to do. At the top of a script it is one line and exit code 2."""


def _excepthook(exc_type, exc, tb, _default=sys.excepthook):
    if not issubclass(exc_type, UserError):
        from files import disk_full_error  # here, not above: files.py imports this module
        user_error = disk_full_error(exc)  # a full disk is the machine's state, not a bug: one line too
        if user_error is None:
            return _default(exc_type, exc, tb)
        exc = user_error
    # The stack has unwound, so every `finally` block has run. An excepthook cannot set the exit status,
    # so run the atexit handlers (wandb, torch.distributed, ...) here, then leave with 2.
    _flush(sys.stdout)  # what the script printed comes before the error line
    print(f"error: {exc}", file=sys.stderr, flush=True)
    atexit._run_exitfuncs()
    _flush(sys.stdout)
    _flush(sys.stderr)
    os._exit(2)


def _flush(stream):
    try:
        stream.flush()
    except (OSError, ValueError):  # closed, or a broken pipe: nothing more can be shown
        pass


def install_error_hook():
    """Print a UserError reaching the top as `error: ...` and exit 2. Call it again after
    torch.distributed.init_process_group, which installs an excepthook of its own."""
    sys.excepthook = _excepthook


def _settable_keys(scope):
    # the script's configuration: plain values defined before configure() is called
    return {k for k, v in scope.items()
            if not k.startswith('_') and isinstance(v, (int, float, bool, str, type(None), tuple, list, dict))}


def _check_key(key, keys, source):
    if key not in keys:
        near = difflib.get_close_matches(key, sorted(keys), n=3, cutoff=0.5)
        hint = f"; did you mean {' or '.join(near)}?" if near else f"; valid keys: {', '.join(sorted(keys))}"
        raise UserError(f"unknown config key '{key}' (from {source}){hint}")


def _coerce(key, value, default, source):
    """Return value if it fits the type of the default (an int is a fine float), else raise."""
    if default is None:
        return value
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
    elif isinstance(default, int):
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif isinstance(default, float):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif isinstance(value, type(default)):
        return value
    raise UserError(f"config key '{key}' (from {source}) must be {type(default).__name__} "
                    f"like its default {default!r}, got {type(value).__name__} {value!r}")


def resolve_config_path(arg):
    """'config/x.py' as given, or a bare name 'x' meaning config/x.py (from anywhere)."""
    candidates = [arg] if arg.endswith('.py') else []
    candidates += [os.path.join(REPO_DIR, 'config', arg if arg.endswith('.py') else arg + '.py')]
    if arg.endswith('.py'):
        candidates.append(os.path.join(REPO_DIR, arg))
    for path in candidates:
        if os.path.isfile(path):
            return path
    names = sorted(f[:-3] for f in os.listdir(os.path.join(REPO_DIR, 'config')) if f.endswith('.py'))
    near = difflib.get_close_matches(os.path.basename(arg).removesuffix('.py'), names, n=3, cutoff=0.5)
    hint = f"; did you mean {' or '.join(near)}?" if near else f"; available: {', '.join(names)}"
    raise UserError(f"no config file '{arg}'{hint}")


def parse_value(text):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return text


given = {}  # key -> where the last configure() call got it ('--key=value' or a config file's path)


def configure(scope, argv=None, verbose=True):
    """Apply config files and --key=value arguments to the dict `scope` (a script's globals()). Which keys
    were set, and by what, is left in `given`: a script can then tell a user's setting from its default."""
    install_error_hook()
    argv = sys.argv[1:] if argv is None else argv
    keys = _settable_keys(scope)
    given.clear()
    for arg in argv:
        if arg.startswith('--'):
            key, eq, text = arg[2:].partition('=')
            if not eq:
                raise UserError(f"argument '{arg}' must look like --key=value")
            _check_key(key, keys, arg)
            scope[key] = _coerce(key, parse_value(text), scope[key], arg)
            given[key] = arg
            if verbose:
                print(f"Overriding: {key} = {scope[key]!r}")
        else:
            path = resolve_config_path(arg)
            if verbose:
                print(f"Overriding config with {os.path.relpath(path)}")
            file_scope = {}
            with open(path) as f:
                source = f.read()
            try:
                code = compile(source, path, 'exec')
            except SyntaxError as e:  # a typo in the user's file, not a bug here: one line naming where
                raise UserError(f"config file {path}, line {e.lineno}: {e.msg}: fix the Python syntax "
                                f"there (a config file is plain Python assignments)") from None
            exec(code, file_scope)
            for key, value in file_scope.items():
                if key.startswith('_') or key == '__builtins__' or type(value).__name__ == 'module':
                    continue
                _check_key(key, keys, path)
                scope[key] = _coerce(key, value, scope[key], path)
                given[key] = path
    return {k: scope[k] for k in sorted(keys)}


def require(scope, *names, at_least=None, above=None, below=None):
    """A UserError naming the first of these config keys of `scope` (a script's globals()) whose value is
    out of bounds: below `at_least`, not above `above`, or not below `below`. Scripts call it right after
    configure(), so a bad count or rate stops the run before any work, not as a crash (or a silent no-op)
    deep inside training."""
    if at_least is not None and below is not None:
        rule = f"in [{at_least}, {below})"
    elif above is not None and below is not None:
        rule = f"in ({above}, {below})"
    else:
        rule = ' and '.join(f"{word} {bound}" for word, bound in
                            (('at least', at_least), ('above', above), ('below', below)) if bound is not None)
    for name in names:
        value = scope[name]
        if ((at_least is not None and value < at_least) or (above is not None and value <= above)
                or (below is not None and value >= below)):
            raise UserError(f"{name} must be {rule}, got {value!r}: set --{name}= to a value {rule}")


def require_positive(scope, *names):
    """A UserError naming the first of these config keys of `scope` (a script's globals()) that is below 1."""
    require(scope, *names, at_least=1)
