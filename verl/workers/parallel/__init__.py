"""Model parallelism applied from outside the model code: Ulysses sequence parallelism (:mod:`.ulysses`)."""
