"""verl's ``verl.experimental`` paths, re-exporting this library's implementations."""
