"""modelops operator: kopf handlers over pure builders, gating statistics and a state machine."""
