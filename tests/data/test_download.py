"""lib.data.download (re-exported by lib.data): verify, and download from a loopback HTTP server (no internet)."""
import functools
import hashlib
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
import io
import shutil
import socket
import tarfile
import threading

import pytest

from lib import data
from lib.__main__ import main, parser
from tests.conftest import sample_lines, write_lines


SAMPLE = data.SAMPLE_ROOT


# ---------------------------------------------------------------- verify

def test_verify_sample_is_clean():
    problems, counts = data.verify(SAMPLE)
    assert problems == []
    assert counts == {
        "train": {"images": 6000, "per_class_min": 60, "per_class_max": 60, "classes": 100},
        "val": {"images": 1500, "per_class_min": 15, "per_class_max": 15, "classes": 100},
    }


def test_verify_reports_every_problem_with_file_and_line(tiny):
    good = (tiny / "images" / "train" / "a" / "abbey" / "00000001.jpg").read_bytes()
    (tiny / "images" / "train" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    lines = sample_lines("train", 2) + [
        "train/truncated.jpg 0",          # line 7
        "train/a/abbey/00000002.jpg 100",  # line 8
        "train/a/abbey/missing.jpg 1",    # line 9
        "train/a/abbey/00000001.jpg",     # line 10
    ]
    write_lines(tiny / "train.txt", lines)
    (tiny / "val.txt").unlink()
    problems, counts = data.verify(tiny)
    expected = [("train.txt:7:", "truncated.jpg does not decode"), ("train.txt:8:", "label 100"),
                ("train.txt:9:", "missing.jpg does not exist"), ("train.txt:10:", "expected"),
                ("val.txt:", "missing")]
    assert len(problems) == len(expected)
    for where, what in expected:
        assert any(where in p and what in p for p in problems), (where, what, problems)
    assert counts["train"] == {"images": 6, "per_class_min": 0, "per_class_max": 2, "classes": 3}


# ---------------------------------------------------------------- download

class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path):
    """(folder, base URL): `folder` served over HTTP on 127.0.0.1 by a thread."""
    folder = tmp_path / "www"
    folder.mkdir()
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def make_archive(path, root, prefix="", lists=True):
    """A .tar.gz of `root`'s images/ (and list files) under `prefix`."""
    names = ["images"] + (list(data.LIST_FILES) if lists else [])
    with tarfile.open(path, "w:gz") as tar:
        for name in names:
            tar.add(root / name, arcname=f"{prefix}{name}")
    return path


def add_member(archive, name, kind=tarfile.REGTYPE, linkname=""):
    """Append one member to an uncompressed .tar."""
    with tarfile.open(archive, "a") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, linkname, 4 if kind == tarfile.REGTYPE else 0
        tar.addfile(info, io.BytesIO(b"evil") if kind == tarfile.REGTYPE else None)


def leftovers(parent):
    return sorted(p.name for p in parent.iterdir())


def md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


def official_archive(path, root):
    """A .tar.gz in the official release's layout: images/{train,val,test}/..., objects/..., no list files."""
    test_image = root / "images" / "test" / "00000001.jpg"
    test_image.parent.mkdir()
    shutil.copy(root / "images" / data.read_list(root, "val")[0][0], test_image)
    annotation = root / "objects" / "train" / "a" / "abbey" / "00000001.xml"
    annotation.parent.mkdir(parents=True)
    annotation.write_text("<annotation></annotation>")
    with tarfile.open(path, "w:gz") as tar:
        tar.add(root / "images", arcname="images")
        tar.add(root / "objects", arcname="objects")
    return path


@pytest.fixture
def release(tiny, server):
    """(archive URL, its MD5, list files URL) of a tiny release in the official layout on the server."""
    folder, url = server
    archive = official_archive(folder / "data.tar.gz", tiny)
    (folder / "lists").mkdir()
    for name in data.LIST_FILES:
        shutil.copy(tiny / name, folder / "lists")
    return f"{url}/data.tar.gz", md5(archive), f"{url}/lists/"


def test_download_of_the_official_layout_with_its_md5_verifies(release, tiny, tmp_path):
    url, checksum, lists_url = release
    target = data.download(tmp_path / "datasets" / "mp", url, md5=checksum, lists_url=lists_url, timeout=5)
    assert data.verify(target) == data.verify(tiny)
    assert data.read_list(target, "train") == data.read_list(tiny, "train")
    assert (target / "images" / "test" / "00000001.jpg").is_file()  # unlisted test images are kept
    assert leftovers(target.parent) == ["mp"]


def test_download_with_a_wrong_md5_extracts_nothing(release, tmp_path):
    url, checksum, lists_url = release
    wrong = "0" * 32
    with pytest.raises(data.DataError, match=rf"MD5 {checksum}, expected {wrong}.*nothing was extracted"):
        data.download(tmp_path / "datasets" / "mp", url, md5=wrong, lists_url=lists_url, timeout=5)
    assert leftovers(tmp_path / "datasets") == []  # neither the archive nor anything from it


def test_command_line_download_with_a_wrong_md5_exits_2_naming_both_sums(release, tmp_path, capsys):
    url, checksum, lists_url = release
    wrong = "f" * 32
    status = main(["data", "download", str(tmp_path / "mp"), "--url", url, "--md5", wrong,
                   "--lists-url", lists_url])
    err = capsys.readouterr().err.strip().splitlines()[-1]  # the lines before are the progress bar
    assert status == 2 and err.startswith("error: ") and checksum in err and wrong in err
    assert [name for name in leftovers(tmp_path) if "mp" in name] == []  # no data set, no download folder


def test_command_line_download_defaults_to_the_official_release():
    args = parser().parse_args(["data", "download", "somewhere"])
    assert args.url == "http://miniplaces.csail.mit.edu/data/data.tar.gz"
    assert args.md5 == "265825ec94f79390e4f1e38045a69059"
    assert args.lists_url == "https://raw.githubusercontent.com/CSAILVision/miniplaces/master/data/"


def test_download_extracts_verifies_and_keeps_a_verified_set(tiny, server, tmp_path):
    folder, url = server
    checksum = md5(make_archive(folder / "data.tar.gz", tiny, prefix="data/"))
    target = tmp_path / "datasets" / "miniplaces"
    assert data.download(target, f"{url}/data.tar.gz", md5=checksum, timeout=5) == target
    assert data.verify(target)[0] == []
    assert len(data.MiniPlaces(target, "train")) == 6
    assert leftovers(target.parent) == ["miniplaces"]
    (folder / "data.tar.gz").unlink()  # a second call must neither fetch nor overwrite
    assert data.download(target, f"{url}/data.tar.gz", md5=checksum, timeout=5) == target


def test_download_fetches_list_files_the_archive_lacks(tiny, server, tmp_path):
    folder, url = server
    checksum = md5(make_archive(folder / "data.tar.gz", tiny, lists=False))
    (folder / "lists").mkdir()
    for name in data.LIST_FILES:
        shutil.copy(tiny / name, folder / "lists")
    target = data.download(tmp_path / "mp", f"{url}/data.tar.gz", md5=checksum, timeout=5,
                           lists_url=f"{url}/lists")  # without the trailing slash
    assert data.read_list(target, "val") == data.read_list(tiny, "val")


@pytest.mark.parametrize("name, kind, linkname", [
    ("../evil", tarfile.REGTYPE, ""),
    ("/tmp/evil-absolute", tarfile.REGTYPE, ""),
    ("images/link", tarfile.SYMTYPE, "../../evil"),
    ("images/hard", tarfile.LNKTYPE, "../evil"),
])
def test_download_refuses_members_outside_the_target(tiny, server, tmp_path, name, kind, linkname):
    folder, url = server
    archive = folder / "data.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tiny / "images", arcname="images")
    add_member(archive, name, kind, linkname)
    target = tmp_path / "out" / "mp"
    with pytest.raises(data.DataError, match=rf"refusing to extract .*{name}"):
        data.download(target, f"{url}/data.tar", md5=md5(archive), timeout=5)
    assert not (tmp_path / "evil").exists() and not (tmp_path / "out" / "evil").exists()
    assert leftovers(target.parent) == []


def test_download_of_a_truncated_archive_fails_clearly(tiny, server, tmp_path):
    folder, url = server
    whole = make_archive(tmp_path / "whole.tar.gz", tiny).read_bytes()
    (folder / "data.tar.gz").write_bytes(whole[: len(whole) // 2])
    target = tmp_path / "out" / "mp"
    with pytest.raises(data.DataError, match="corrupt or truncated"):
        data.download(target, f"{url}/data.tar.gz", md5=md5(folder / "data.tar.gz"), timeout=5)
    assert leftovers(target.parent) == []


def test_download_from_an_unreachable_url_fails_with_one_clear_message(tmp_path):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}/data.tar.gz"
    with pytest.raises(data.DataError, match=rf"could not download .* from {url}: .*--data-dir"):
        data.download(tmp_path / "mp", url, timeout=5)
    assert leftovers(tmp_path) == []


def test_download_leaves_other_folders_alone(tmp_path):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(data.DataError, match="not a MiniPlaces data set"):
        data.download(tmp_path / "mine", "http://127.0.0.1:9/x.tar.gz", timeout=1)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


