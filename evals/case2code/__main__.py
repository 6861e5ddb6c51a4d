from evals.case2code.cli import entry

entry()
