"""Entity resolution assist: inputs, rules, candidates, evaluation."""
