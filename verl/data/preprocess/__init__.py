"""Dataset preprocessors: ``python -m verl.data.preprocess.NAME --local_dir DIR [--data_source PATH_OR_NAME]``.

Each writes ``train.parquet`` and ``test.parquet`` in the RL row format (see :mod:`verl.data.rl_dataset`).
"""
