"""Path confinement (CWE-22): every escape is an `UnsafePath` (a 4xx / tool error), never a 500.

Cases from RELIABILITY.md, "Path traversal in file tools".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from agent33.config import Settings
from agent33.security.paths import UnsafePath, open_safely, read_bytes, safe_path, write_bytes
from agent33.tools import ToolContext, ToolError, get_tool

pytestmark = pytest.mark.security


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    (folder / "a.txt").write_text("inside")
    (tmp_path / "secret.txt").write_text("outside")
    return folder


def test_relative_paths_resolve_under_the_first_root(root: Path) -> None:
    assert safe_path([root], "a.txt", must_exist=True) == (root / "a.txt").resolve()
    assert safe_path([root], "sub/../a.txt") == (root / "a.txt").resolve()
    assert safe_path([root], str(root / "new.txt")) == (root / "new.txt").resolve()


@pytest.mark.parametrize(
    "user_path",
    ["../../etc/passwd", "../secret.txt", "/etc/passwd", "sub/../../secret.txt", "a.txt\x00.png",
     "x" * 4097, "", "/"],
)  # fmt: skip
def test_escapes_and_malformed_paths_are_refused(root: Path, user_path: str) -> None:
    with pytest.raises(UnsafePath):
        safe_path([root], user_path)


def test_encoded_traversal_stays_a_literal_name_inside(root: Path) -> None:
    for name in ("..%2f..%2fetc%2fpasswd", "%252e%252e%252f", "..\\..\\x", "\u2024\u2024/x"):
        assert safe_path([root], name).is_relative_to(root.resolve())


def test_prefix_trap_root2_is_not_under_root(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    (tmp_path / "root2").mkdir()
    (tmp_path / "root2" / "f").write_text("x")
    with pytest.raises(UnsafePath, match="outside"):
        safe_path([tmp_path / "root"], str(tmp_path / "root2" / "f"))


def test_a_symlink_pointing_outside_is_refused(root: Path) -> None:
    (root / "link").symlink_to(root.parent / "secret.txt")
    (root / "dirlink").symlink_to(root.parent)
    for name in ("link", "dirlink/secret.txt"):
        with pytest.raises(UnsafePath, match="outside"):
            safe_path([root], name)
    with pytest.raises(UnsafePath):
        write_bytes([root], "dirlink/new.txt", b"x")
    assert not (root.parent / "new.txt").exists()


def test_a_symlink_loop_is_a_clean_refusal(root: Path) -> None:
    (root / "loop1").symlink_to(root / "loop2")
    (root / "loop2").symlink_to(root / "loop1")
    for strict in (False, True):
        with pytest.raises(UnsafePath):
            safe_path([root], "loop1/x", must_exist=strict)


def test_o_nofollow_refuses_a_symlink_swapped_in_after_the_check(root: Path) -> None:
    checked = safe_path([root], "a.txt", must_exist=True)
    (root / "a.txt").unlink()
    (root / "a.txt").symlink_to(root.parent / "secret.txt")  # the TOCTOU swap
    with pytest.raises(UnsafePath, match="cannot open"):
        open_safely([root], checked, os.O_RDONLY)


def test_writing_through_a_hard_link_is_refused(root: Path) -> None:
    os.link(root.parent / "secret.txt", root / "hard.txt")
    with pytest.raises(UnsafePath, match="hard links"):
        write_bytes([root], "hard.txt", b"overwritten")
    assert (root.parent / "secret.txt").read_text() == "outside"


def test_read_and_write_within_limits(root: Path) -> None:
    assert write_bytes([root], "deep/er/n.txt", b"hello") == (root / "deep/er/n.txt").resolve()
    assert read_bytes([root], "deep/er/n.txt", 10) == b"hello"
    with pytest.raises(UnsafePath, match="larger"):
        read_bytes([root], "deep/er/n.txt", 4)
    with pytest.raises(UnsafePath, match="not a regular file"):
        read_bytes([root], "deep", 10)
    with pytest.raises(UnsafePath, match="does not exist"):
        read_bytes([root], "missing.txt", 10)


def test_file_tools_turn_refusals_into_tool_errors(root: Path) -> None:
    context = ToolContext(settings=Settings().replace(file_roots=(root,)))
    written = get_tool("write_file")({"path": "notes/t.md", "content": "hi"}, context)
    assert written == {"path": "notes/t.md", "bytes": 2}
    assert get_tool("read_file")({"path": "notes/t.md"}, context)["content"] == "hi"
    with pytest.raises(ToolError, match="outside"):
        get_tool("read_file")({"path": "../secret.txt"}, context)
    (root / "bin.dat").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ToolError, match="not UTF-8"):
        get_tool("read_file")({"path": "bin.dat"}, context)
    with pytest.raises(ToolError, match="larger"):
        get_tool("write_file")({"path": "big", "content": "x" * (1024 * 1024 + 1)}, context)
    with pytest.raises(ToolError, match="no file roots"):
        get_tool("read_file")(
            {"path": "a.txt"}, ToolContext(settings=Settings().replace(file_roots=()))
        )
