from evals.solverlearner.cli import entry

entry()
