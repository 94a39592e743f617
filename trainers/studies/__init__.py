"""Studies: computations that ask a trained (or exact) score model a question and return numbers and
pictures — what the explorer's tabs and the headless CLIs show. Plain torch, no Qt.

- ``lab``: quality vs steps, decomposed by cause (Sampler-lab tab, ``toy lab``);
- ``experiments``: the guided experiments (Experiments tab, ``python -m trainers.studies.experiments``);
- ``memorisation``: the empirical optimal score and the memorisation meter (Score-field tab, ``toy evaluate``);
- ``history``: loss per noise level and weight snapshots kept during training;
- ``learned_density``: the PF-ODE log-density and NLL of a model (Learned-density tab);
- ``score_field``: learned vs true score at one level, the error map (Score-field and History tabs);
- ``snapshots``: one weight snapshot pictured three ways (History tab);
- ``chains``: the Samplers tab's chain set-up (score models, shared starts, metrics);
- ``convergence``: the deterministic solvers' order of convergence (``toy order``);
- ``reflow``: straightness of a flow model's ODE paths, and reflow (``toy reflow``);
- ``guidance``: what classifier-free guidance samples per sampler and w, against the tilted target and
  p(x|c) (Lab tab's w axis, ``python -m trainers.studies.guidance``);
- ``guidance_experiments``: the guidance experiments (``python -m trainers.studies.guidance_experiments``).

A long study takes ``progress(fraction, what)`` and ``cancelled()`` and returns None when cancelled, so the
explorer runs it in one ``explorer.workers.job.JobWorker``. Import the module you need; this package
imports nothing on its own.
"""
