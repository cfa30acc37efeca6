"""Control-flow actions: `wait`, `parallel_group`, `conditional`, `sub_workflow`.

They return requests (`agent33.engine.action_requests`) that the runner carries out durably, so no
worker is held while a run waits for time, an approval, children or a sub-run.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from agent33.engine.action_requests import AwaitApproval, Defer, FanOut, StartSubRun
from agent33.engine.actions import ActionContext, ActionFailed, register
from agent33.engine.expressions import evaluate

INLINE_WAIT_SECONDS = 2.0
MAX_FAN_OUT = 5000


@register("wait")
def wait(context: ActionContext) -> Any:
    """`with: {seconds: N}` waits durably; `with: {approval: true, prompt}` waits for a human."""
    params = context.params
    if params.get("approval"):
        previous = context.previous_output
        if isinstance(previous, dict) and previous.get("approved") is True:
            return previous
        return AwaitApproval(prompt=str(params.get("prompt", "")))
    seconds = params.get("seconds")
    if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds < 0:
        raise ActionFailed("wait needs `seconds` (a non-negative number) or `approval: true`")
    previous = context.previous_output
    now = dt.datetime.now(dt.UTC)
    if isinstance(previous, dict) and "wait_until" in previous:
        until = dt.datetime.fromisoformat(previous["wait_until"])
        if until <= now:
            return {"waited_seconds": seconds}
        return Defer(until=until)
    if seconds <= INLINE_WAIT_SECONDS:
        time.sleep(seconds)
        return {"waited_seconds": seconds}
    return Defer(until=now + dt.timedelta(seconds=float(seconds)))


@register("parallel_group", inline=True)
def parallel_group(context: ActionContext) -> Any:
    """`with: {items: [...], step: {action, with}}` maps; `with: {branches: {k: {...}}}` forks."""
    params = context.params
    if "items" in params:
        items = params["items"]
        if not isinstance(items, list):
            raise ActionFailed(f"parallel_group `items` must be a list, got {type(items).__name__}")
        if len(items) > MAX_FAN_OUT:
            raise ActionFailed(
                f"parallel_group fans out to at most {MAX_FAN_OUT} items, got {len(items)}"
            )
        return FanOut(children=[(str(i), item) for i, item in enumerate(items)], kind="map")
    branches = params.get("branches")
    if not isinstance(branches, dict) or not branches:
        raise ActionFailed("parallel_group needs `items` (a list) or `branches` (a mapping)")
    return FanOut(children=[(str(key), None) for key in branches], kind="branches")


@register("conditional", inline=True)
def conditional(context: ActionContext) -> Any:
    """`with: {branches: [{when, next: [ids]}], default: [ids]}`: the first true branch wins."""
    branches = context.params.get("branches", [])
    chosen: list[str] | None = None
    label: int | str = "default"
    for index, branch in enumerate(branches):
        if evaluate(str(branch["when"]), context.context, step_id=context.step_id):
            chosen, label = list(branch.get("next", [])), index
            break
    if chosen is None:
        chosen = list(context.params.get("default", []))
    every = {s for b in branches for s in b.get("next", [])} | set(
        context.params.get("default", [])
    )
    return {"branch": label, "chosen": chosen, "skipped": sorted(every - set(chosen))}


@register("sub_workflow", inline=True)
def sub_workflow(context: ActionContext) -> Any:
    """`with: {workflow: name, version: N?, inputs: {...}}`: output is the child run's outputs."""
    previous = context.previous_output
    if isinstance(previous, dict) and "outputs" in previous:
        return previous
    name = context.params.get("workflow")
    inputs = context.params.get("inputs", {})
    if not isinstance(name, str) or not name:
        raise ActionFailed("sub_workflow needs `workflow` (a workflow name)")
    if not isinstance(inputs, dict):
        raise ActionFailed("sub_workflow `inputs` must be a mapping")
    version = context.params.get("version")
    return StartSubRun(workflow=name, inputs=inputs, version=int(version) if version else None)
