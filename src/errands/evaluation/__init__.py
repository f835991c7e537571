"""`errands eval`: the whole workflow measured on SWE-bench-style instances.

dataset (instances and environments) → repos (sources and per-attempt origins) → runner (one
instance through the workflow) → scoring (hidden tests in the sandbox) → results (JSONL) →
summary (Markdown) and compare; harness runs them all with the run's own store and worker.
"""
