"""explorer.workers.job.JobWorker, the thread behind the tabs' one-shot studies: exactly one of done, cancelled
or failed per run, with the message a person reads; and an experiment run through it
(trainers.studies.experiments.run_until_cancelled)."""
from __future__ import annotations

import pytest

from explorer.workers import job as job_worker
from trainers.studies.experiments import run_until_cancelled


def outcome(qtbot, worker) -> list:
    """Run `worker` to its end; the (signal, arguments) it sent, progress left out."""
    got = []
    worker.done.connect(lambda r: got.append(("done", r)))
    worker.cancelled.connect(lambda: got.append(("cancelled",)))
    worker.failed.connect(lambda m: got.append(("failed", m)))
    with qtbot.waitSignal(worker.finished, timeout=10000):
        worker.start()
    qtbot.waitUntil(lambda: bool(got), timeout=5000)      # the queued signals arrive after finished
    return got


def sum_job(a, b, progress, cancelled):
    progress(0.5, "adding")
    return None if cancelled() else a + b


def broken_job(progress, cancelled):
    raise ValueError("no data")


def test_a_job_reports_its_result_and_its_progress(qtbot):
    w = job_worker.JobWorker(sum_job, dict(a=2, b=3), "sum")
    seen = []
    w.progress.connect(lambda f, what: seen.append((f, what)))
    assert outcome(qtbot, w) == [("done", 5)]
    assert seen == [(0.5, "adding")]


def test_a_cancelled_job_reports_cancelled_only(qtbot):
    w = job_worker.JobWorker(sum_job, dict(a=2, b=3), "sum")
    w.cancel()
    assert outcome(qtbot, w) == [("cancelled",)]


def test_an_exception_becomes_a_failure_message_naming_the_job(qtbot):
    w = job_worker.JobWorker(broken_job, {}, "the lab")
    assert outcome(qtbot, w) == [("failed", "the lab stopped: ValueError: no data")]


@pytest.mark.parametrize("b, expected", [(3, ("done", 5)), (30, ("failed", "too big"))])
def test_a_result_with_a_problem_is_a_failure(qtbot, b, expected):
    checked = job_worker.JobWorker(sum_job, dict(a=2, b=b), "sum", problem=lambda r: "too big" if r > 10 else "")
    assert outcome(qtbot, checked) == [expected]


class FakeExperiment:
    name = "fake"

    def __init__(self, fail=False):
        self.fail = fail

    def run(self, params, progress, control=False):
        progress(0.25, "phase one")
        if self.fail:
            raise RuntimeError("diverged")
        progress(1.0, "done")
        return {"n": params["n"]}


def experiment_worker(experiment, params):
    """The Experiments tab's worker: a JobWorker running run_until_cancelled, named after the experiment."""
    return job_worker.JobWorker(run_until_cancelled, dict(experiment=experiment, params=params), experiment.name)


def test_an_experiment_in_a_job_worker_reports_done_cancelled_and_failed(qtbot):
    assert outcome(qtbot, experiment_worker(FakeExperiment(), {"n": 3})) == [("done", {"n": 3})]
    cancelled = experiment_worker(FakeExperiment(), {"n": 3})
    cancelled.cancel()                       # the first progress report raises Cancelled inside run
    assert outcome(qtbot, cancelled) == [("cancelled",)]
    assert outcome(qtbot, experiment_worker(FakeExperiment(fail=True), {"n": 3})) == [
        ("failed", "fake stopped: RuntimeError: diverged")]
