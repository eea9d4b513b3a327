"""Model parallelism applied from outside the model code: Ulysses sequence parallelism (:mod:`.ulysses`) and
tensor parallelism in training (:mod:`.tensor_parallel`)."""
