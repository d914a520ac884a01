"""Datasets: data/<name>/prepare.py writes train.bin / val.bin (+ meta.pkl or tokenizer.json); data/common.py holds
what they share.
(A regular package, so `import data.common` finds this folder even if another `data` is installed.)

A script in data/<name>/ runs as `python data/<name>/prepare.py`, and Python puts only its own folder on
sys.path; so, before importing the repo's modules (tokenizer, configurator, data.common, ...), each starts with

    _HERE = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.dirname(os.path.dirname(_HERE)))  # the repo root, as data/__init__.py says

and keeps _HERE as its default out_dir. (assets/plot_losses.py does the same, one folder up.)"""
