"""Model parallelism applied from outside the model code: consecutive-rank groups (:mod:`.groups`), Ulysses
sequence parallelism (:mod:`.ulysses`) and tensor parallelism in training (:mod:`.tensor_parallel`); the native
engine's tensor-parallel rollout lives with the engine (:mod:`verl.rollout.native.tensor_parallel`)."""
