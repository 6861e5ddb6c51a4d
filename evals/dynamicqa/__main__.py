from evals.dynamicqa.cli import cli

cli()
