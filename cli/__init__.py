"""The `vigil` command: one subcommand per job, each a thin shell around a component's function.

`main.py` builds the parser from the groups (`models`, `ops`, `lifecycle`, `log`), all
sharing `common.py`. Heavy libraries (mlflow, bentoml, onnxruntime) are imported only by
the subcommand that needs them, so `vigil --help` answers instantly.
"""
