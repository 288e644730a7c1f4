"""`make demo`: a model change goes live only through evidence, on a local control plane."""
