"""assets/plot_losses.py draws the README's figures from a real run's log.jsonl."""
from conftest import assert_one_line_error, run_script


def test_plot_losses_draws_a_png_from_a_real_log(quickstart_run, tmp_path):
    out = tmp_path / 'loss.png'
    proc = run_script('assets/plot_losses.py', f'--logs={quickstart_run / "log.jsonl"}', f'--out={out}',
                      '--target=1.8857', '--x=elapsed_s')
    assert f'wrote {out}' in proc.stdout
    assert out.read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and out.stat().st_size > 10_000


def test_plot_losses_bad_input(tmp_path):
    assert_one_line_error(run_script('assets/plot_losses.py', f'--logs={tmp_path}/none.jsonl', check=False),
                          'no log at')
    (tmp_path / 'log.jsonl').write_text('')
    assert_one_line_error(run_script('assets/plot_losses.py', f'--logs={tmp_path}/log.jsonl', check=False),
                          'has no evals')


def png_width(path):
    return int.from_bytes(path.read_bytes()[16:20], 'big')  # the IHDR chunk's width field


def test_plot_losses_draws_hellaswag_beside_the_loss(sort_run, quickstart_run, tmp_path):
    # a log with hellaswag_acc_norm (train.py --eval_hellaswag=True) gets a second panel beside the loss
    _, scored_run, _, _ = sort_run
    both, loss_only = tmp_path / 'both.png', tmp_path / 'loss.png'
    run_script('assets/plot_losses.py', f'--logs={scored_run / "log.jsonl"}', f'--out={both}')
    run_script('assets/plot_losses.py', f'--logs={quickstart_run / "log.jsonl"}', f'--out={loss_only}')
    assert (png_width(both), png_width(loss_only)) == (12 * 120, 7 * 120)  # figsize inches x dpi
