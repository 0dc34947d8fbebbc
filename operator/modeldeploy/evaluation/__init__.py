"""The golden-set evaluation: the examples of a golden set, the label read from each answer, and the
counts a measurement reports (modeldeploy.canary.quality judges them)."""
