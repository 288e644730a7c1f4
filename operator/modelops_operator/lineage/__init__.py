"""The audit trail: immutable LineageRecords (what changed, on what evidence, who approved),
their source in Git and the cluster, retention, and the model card built from them."""
