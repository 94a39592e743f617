"""Studies: computations that ask a trained (or exact) score model a question and return numbers.

One module per study — ``lab`` (quality vs steps, decomposed by cause), ``experiments`` (the guided
experiments, ``python -m trainers.studies.experiments``), ``memorisation`` (the memorisation meter and
the empirical optimal score), ``history`` (loss per noise level and weight snapshots during training).
Plain torch, no Qt: the explorer's tabs run them through ``explorer.workers``. Import the module you
need; this package imports nothing on its own.
"""
