"""Writing reports, policy files and new projects: atomic, through links, never a traceback."""

import functools
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import pytest

from routewatch.cli import run
from routewatch.errors import OutputError
from routewatch.files import write_atomic


def test_a_new_file_is_written_with_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "report.html"

    assert write_atomic(path, "<p>new</p>") == path
    assert path.read_text() == "<p>new</p>"
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]  # no temp file left


def test_a_replaced_file_keeps_its_permissions(tmp_path: Path) -> None:
    path = tmp_path / "policy.json"
    path.write_text("old")
    path.chmod(0o600)

    write_atomic(path, "new")

    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_symbolic_link_is_written_through_and_kept(tmp_path: Path) -> None:
    (tmp_path / "real.html").write_text("old")
    link = tmp_path / "latest.html"
    link.symlink_to("real.html")

    write_atomic(link, "new")

    assert link.is_symlink()
    assert (tmp_path / "real.html").read_text() == "new"


def test_a_named_pipe_is_written_into_not_replaced(tmp_path: Path) -> None:
    """Renaming over a pipe or a device (``-o /dev/stdout``) would replace it with a file."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.append(pipe.read_text()))
    reader.start()

    write_atomic(pipe, "through the pipe")
    reader.join(timeout=10)

    assert got == ["through the pipe"]
    assert stat.S_ISFIFO(pipe.stat().st_mode)


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("afile/report.html", "cannot write {root}/afile/report.html: Not a directory"),
        ("afile/sub/report.html", "cannot write {root}/afile/sub/report.html: Not a directory"),
        ("folder", "cannot write {root}/folder: it is a folder"),
    ],
)
def test_a_path_that_cannot_be_written_is_an_output_error_naming_it(
    tmp_path: Path, target: str, message: str
) -> None:
    (tmp_path / "afile").write_text("in the way")
    (tmp_path / "folder").mkdir()

    with pytest.raises(OutputError) as raised:
        write_atomic(tmp_path / target, "text")

    assert str(raised.value) == message.format(root=tmp_path)
    assert (tmp_path / "afile").read_text() == "in the way"


def test_init_into_a_path_under_a_file_says_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "afile").write_text("in the way")

    assert run(["init", str(tmp_path / "afile" / "project")]) == 2

    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot create the folder {tmp_path / 'afile' / 'project'}")
    assert "Traceback" not in err


def test_report_into_a_path_under_a_file_says_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(["init", str(tmp_path)]) == 0
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("in the way")
    capsys.readouterr()

    assert run(["report", "-o", "afile/report.html"]) == 2

    err = capsys.readouterr().err
    assert err == "error: cannot write afile/report.html: Not a directory\n"


ROOT = os.geteuid() == 0
SETPRIV = shutil.which("setpriv")


@pytest.mark.skipif(not ROOT, reason="giving a file to another user needs root")
def test_a_replaced_file_keeps_its_owner_and_group(tmp_path: Path) -> None:
    """A gateway reading its config as its own user, mode 0600, must still read it."""
    path = tmp_path / "config.yaml"
    path.write_text("old\n")
    os.chown(path, 1000, 1001)
    path.chmod(0o600)

    write_atomic(path, "new\n")

    st = path.stat()
    assert (st.st_uid, st.st_gid, stat.S_IMODE(st.st_mode)) == (1000, 1001, 0o600)
    assert path.read_text() == "new\n"


@functools.cache
def _another_user_cannot_import() -> str:
    """Why uid 1000 cannot run this checkout's routewatch, or "" when it can.

    A checkout under a folder only root may enter (``mktemp -d`` makes one 0700) keeps
    another user out of the interpreter and the sources alike.
    """
    if not (ROOT and SETPRIV):
        return "needs root and setpriv to act as a user"
    found = subprocess.run(
        [
            SETPRIV,
            "--reuid=1000",
            "--regid=1000",
            "--clear-groups",
            sys.executable,
            "-c",
            "import routewatch.files",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if found.returncode:
        return "uid 1000 cannot import routewatch from this checkout (a folder above it is private)"
    return ""


def _as_another_user(path: Path) -> subprocess.CompletedProcess[str]:
    """``write_atomic(path, "new")`` run as uid/gid 1000, printing what it raised."""
    probe = (
        "import sys\n"
        "from pathlib import Path\n"
        "from routewatch.files import write_atomic\n"
        "from routewatch.errors import OutputError\n"
        "try:\n"
        f"    write_atomic(Path({str(path)!r}), 'new\\n')\n"
        "except OutputError as exc:\n"
        "    print(exc)\n"
    )
    assert SETPRIV is not None
    if why := _another_user_cannot_import():
        pytest.skip(why)
    return subprocess.run(
        [SETPRIV, "--reuid=1000", "--regid=1000", "--clear-groups", sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "HOME": str(path.parent)},
    )


@pytest.mark.skipif(not (ROOT and SETPRIV), reason="needs root and setpriv to act as a user")
@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_a_file_another_user_owns_is_replaced_only_if_its_reader_keeps_it(
    request: pytest.FixtureRequest, mode: int
) -> None:
    """A user that may not give the new file away refuses to take a private one over
    (its owner could no longer read it), and replaces one that every user may read."""
    # Under /tmp itself: pytest's own folders are for root only.
    folder = Path(tempfile.mkdtemp(prefix="routewatch-shared-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    folder.chmod(0o777)
    path = folder / "config.yaml"
    path.write_text("old\n")
    os.chown(path, 2000, 2000)
    path.chmod(mode)

    said = _as_another_user(path).stdout

    if mode == 0o600:
        assert "it belongs to uid 2000 and gid 2000, and the new file would be uid 1000" in said
        assert "or make the file readable by others" in said
        assert (path.stat().st_uid, path.read_text()) == (2000, "old\n")
        assert [p.name for p in folder.iterdir()] == ["config.yaml"], "no temp file left"
    else:
        assert said == ""
        assert path.read_text() == "new\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.skipif(not (ROOT and SETPRIV), reason="needs root and setpriv to act as a user")
def test_a_writable_file_in_a_folder_that_is_not_says_the_folder_must_be_writable(
    request: pytest.FixtureRequest,
) -> None:
    """The file is never opened: its own write permission is not what is missing."""
    folder = Path(tempfile.mkdtemp(prefix="routewatch-locked-", dir="/tmp"))
    request.addfinalizer(lambda: shutil.rmtree(folder, ignore_errors=True))
    folder.chmod(0o755)  # root's: others may not create files in it
    path = folder / "config.yaml"
    path.write_text("old\n")
    os.chown(path, 1000, 1000)

    said = _as_another_user(path).stdout

    assert said == (
        f"cannot write {path}: cannot create a file in its folder {folder} (Permission "
        "denied); the file is replaced through a temporary file beside it, so the folder "
        "must be writable\n"
    )
    assert path.read_text() == "old\n"
