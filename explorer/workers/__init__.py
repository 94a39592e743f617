"""The explorer's threads and child processes: thin shells that run ``trainers`` code off the GUI thread.

``job`` (one-shot studies: ``JobWorker(fn, args)``), ``chains`` (the Samplers tab's chain stepper),
``training`` (the Training tab's live fit), ``process`` (image-trainer child processes). They hold no
maths; they call ``trainers`` and report through Qt signals.
"""
