"""The quality figures in README.md and docs/tuning.md are the ones the code produces."""

import importlib.util

from conftest import ROOT


def _report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_dev_set_figures_are_what_the_code_produces(engine, dev_questions, dev_kinds, dev_followups):
    report = _report()
    for (path, name), text in report.dev_figures(engine).items():
        committed = report.committed(path, name)
        assert committed == text, f"{path.name} [{name}] is stale: run `python benchmarks/report.py --update`"
