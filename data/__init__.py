"""Datasets: data/<name>/prepare.py writes train.bin / val.bin (+ meta.pkl); data/common.py holds what they share.
(A regular package, so `import data.common` finds this folder even if another `data` is installed.)"""
