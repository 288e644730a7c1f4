"""Watching a live model: drift, accuracy decay and humility monitors (pure statistics), their
simulation, and the training profile they compare against."""
