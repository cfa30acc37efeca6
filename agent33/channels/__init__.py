"""Messaging channels: chat platforms in front of agents (issue 16).

`protocol` is the one message model and the adapter contract; `telegram`, `slack`, `discord`
and `whatsapp` speak each platform's own webhook and send API; `store` keeps channels and
their messages; `receive` turns a verified webhook into messages for an agent; `replies` runs
the agent and sends its answer from the `io` queue; `pairing` links senders to users.
"""
