"""Model parallelism applied from outside the model code: consecutive-rank groups (:mod:`.groups`) and Ulysses
sequence parallelism (:mod:`.ulysses`); the native engine's tensor-parallel rollout lives with the engine
(:mod:`verl.rollout.native.tensor_parallel`)."""
