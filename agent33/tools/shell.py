"""`shell`: run one allow-listed program with an argv list, never through a shell.

The same rules as a `run_command` step, through the same code (`agent33.security.processes`
and `sandbox`): the program must be named by AGENT33_COMMAND_ALLOWLIST, the working directory
lies under the file roots, the child is sandboxed without network, and its output is kept to
the first and last 32 KiB of each stream. The timeout is the call's (at most
AGENT33_TOOL_TIMEOUT). A non-zero exit is a result (the model reads the exit code and stderr);
a refusal or a timeout is a tool error.
"""

from __future__ import annotations

from typing import Any

from agent33.llm.types import ToolSpec
from agent33.security import processes, sandbox
from agent33.tools.registry import Tool, ToolContext, ToolError, register_tool

DEFAULT_TIMEOUT = 10.0


def shell(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    settings = context.settings
    argv = [str(a) for a in arguments["argv"]]
    timeout = min(float(arguments.get("timeout", DEFAULT_TIMEOUT)), settings.tool_timeout)
    stdin = arguments.get("stdin")
    try:
        program = processes.resolve_program(argv[0], settings.command_allowlist)
        jail = sandbox.prepare(
            settings,
            program,
            argv[1:],
            cwd=arguments.get("cwd"),
            env={},
            limits=sandbox.Limits.for_timeout(timeout),
        )
        output, stopped = processes.run(argv[0], jail, timeout=timeout, stdin=stdin)
    except (sandbox.SandboxRefused, processes.ProgramFailed) as exc:
        raise ToolError(f"shell: {exc.message}") from None
    if stopped == "timeout":
        raise ToolError(
            f"shell: {argv[0]!r} timed out after {timeout:g}s"
            + processes.excerpt("stdout", output["stdout"], 500)
        )
    return {"argv": argv, **output}


_ARG = {"type": "string", "maxLength": 4096, "pattern": "^[^\\u0000]*$"}

register_tool(
    Tool(
        ToolSpec(
            "shell",
            "Run one allow-listed program (argv list, no shell syntax) in a sandbox under the "
            "file roots; returns exit_code, stdout and stderr.",
            {
                "type": "object",
                "required": ["argv"],
                "additionalProperties": False,
                "properties": {
                    "argv": {
                        "type": "array",
                        "items": _ARG,
                        "minItems": 1,
                        "maxItems": 256,
                        "description": 'program and its arguments, e.g. ["ls", "-l"]',
                    },
                    "cwd": {**_ARG, "description": "directory under the file roots"},
                    "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
                    "stdin": {"type": "string", "maxLength": 1048576},
                },
            },
        ),
        shell,
    )
)
