"""Agents: the runtime that turns an agent definition and an input into a model-backed answer."""
