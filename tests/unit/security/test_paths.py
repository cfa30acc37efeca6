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


def _probe(context: ToolContext, path: str) -> str:
    """The read_file error a model sees, with the path it sent blanked out."""
    with pytest.raises(ToolError) as info:
        get_tool("read_file")({"path": path}, context)
    return info.value.message.replace(repr(path), "<path>")


def test_read_file_does_not_tell_whether_a_path_outside_exists(root: Path) -> None:
    """Pairs of probes, one existing and one not, must get the same answer."""
    outside = root.parent
    (outside / "dir").mkdir()
    (outside / "locked").mkdir(mode=0o000)
    (outside / "loop").symlink_to(outside / "loop")
    (root / "to_secret").symlink_to(outside / "secret.txt")
    (root / "to_nothing").symlink_to(outside / "nothing.txt")
    (root / "up").symlink_to(outside)
    context = ToolContext(settings=Settings().replace(file_roots=(root,)))
    pairs = [
        ("../secret.txt", "../nothing.txt"),
        (str(outside / "secret.txt"), str(outside / "nothing.txt")),
        (str(outside / "dir"), str(outside / "nodir")),
        (str(outside / "dir" / "x"), str(outside / "nodir" / "x")),
        (str(outside / "locked" / "x"), str(outside / "nodir" / "x")),
        (str(outside / "loop"), str(outside / "nothing.txt")),
        (str(outside / "secret.txt" / "x"), str(outside / "nothing.txt" / "x")),
        ("to_secret", "to_nothing"),
        ("up/secret.txt", "up/nothing.txt"),
        ("a.txt/../../secret.txt", "a.txt/../../nothing.txt"),
    ]
    try:
        answers = {(_probe(context, there), _probe(context, absent)) for there, absent in pairs}
    finally:
        (outside / "locked").chmod(0o700)
    assert answers == {("path <path> is outside the allowed roots",) * 2}
    assert "does not exist" in _probe(context, "missing.txt")  # inside the root it may say so


def test_a_hard_link_to_a_file_outside_cannot_be_read(root: Path) -> None:
    """Same inode, a name inside the root: no path check sees it, so st_nlink > 1 is refused."""
    (root.parent / "creds").write_text("TOPSECRET-42")
    os.link(root.parent / "creds", root / "hard.txt")
    with pytest.raises(UnsafePath, match="hard links"):
        read_bytes([root], "hard.txt", 100)
    context = ToolContext(settings=Settings().replace(file_roots=(root,)))
    for tool, arguments in (
        ("read_file", {"path": "hard.txt"}),
        ("write_file", {"path": "hard.txt", "content": "overwritten"}),
    ):
        with pytest.raises(ToolError, match="hard links") as refused:
            get_tool(tool)(arguments, context)
        assert "TOPSECRET" not in refused.value.message
    assert (root.parent / "creds").read_text() == "TOPSECRET-42"


def test_a_fifo_in_the_root_does_not_hang_the_tools(root: Path) -> None:
    os.mkfifo(root / "pipe")
    context = ToolContext(settings=Settings().replace(file_roots=(root,)))
    with pytest.raises(ToolError, match="not a regular file"):
        get_tool("read_file")({"path": "pipe"}, context)
    with pytest.raises(ToolError, match="cannot open"):
        get_tool("write_file")({"path": "pipe", "content": "x"}, context)
