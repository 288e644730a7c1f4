"""`kubectl modelops`: the command-line view of ModelDeployments, challenges and their lineage.

One module per concern: `arguments` (the parser, global flags in any position), `connection`
(kubeconfig and context, like kubectl), `errors` (every failure as one line with its fix),
`views` and `output` (tables, JSON, YAML), `actions` (approve, orders, pause), `watching`,
`lineage` (history and export), `completion`, and `main`, which ties them together.
"""
