"""The workflow engine: states, expressions, actions, incremental planner and step runner."""
