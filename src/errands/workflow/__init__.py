"""The story of a task: one module per stage, the user's actions, and the job dispatcher."""
