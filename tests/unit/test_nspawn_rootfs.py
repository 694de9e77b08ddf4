"""The systemd hosts' rootfs recipe (tools/nspawn_rootfs.py): the mirror read from apt's sources,
and the cache key that changes with the recipe."""
from __future__ import annotations

import pytest

from tools import nspawn_rootfs

DEB822 = """\
Types: deb
# http://snapshot.example/archive
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://security.example/debian-security
Suites: bookworm-security
Components: main
"""


@pytest.mark.parametrize("files, expected", [
    ({"sources.list.d/debian.sources": DEB822},
     {"uri": "http://mirror.example/debian", "signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg"}),
    ({"sources.list": "# deb http://old.example/debian bookworm main\n"
                      "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm main\n"},
     {"uri": "http://one.example/debian", "signed_by": "/k.gpg"}),
    ({"sources.list.d/off.sources": "Enabled: no\n" + DEB822 +
      "\nTypes: deb\nURIs: http://on.example/debian\nSuites: bookworm\nComponents: main\n"},
     {"uri": "http://on.example/debian", "signed_by": ""}),
    ({"sources.list": "deb-src http://src.example/debian bookworm main\n"
                      "deb http://contrib.example/debian bookworm contrib\n",
      "sources.list.d/debian.sources": DEB822},
     {"uri": "http://mirror.example/debian", "signed_by": "/usr/share/keyrings/debian-archive-keyring.gpg"}),
])
def test_the_mirror_is_apts_first_deb_source_of_bookworm_main(tmp_path, files, expected):
    (tmp_path / "sources.list.d").mkdir()
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    found = nspawn_rootfs.apt_mirror(root=str(tmp_path))
    assert {k: found[k] for k in expected} == expected


def test_no_bookworm_source_is_named(tmp_path):
    (tmp_path / "sources.list").write_text("deb http://x.example/debian trixie main\n")
    with pytest.raises(nspawn_rootfs.RootfsError, match=f"no enabled `deb` source for bookworm main in {tmp_path}"):
        nspawn_rootfs.apt_mirror(root=str(tmp_path))


def test_the_cache_key_follows_the_recipe(monkeypatch):
    before = nspawn_rootfs.rootfs_path()
    assert before.name == f"rootfs-{nspawn_rootfs.recipe_hash()}"
    monkeypatch.setitem(nspawn_rootfs.FILES, "etc/hosts", "127.0.0.1 localhost\n")
    assert nspawn_rootfs.rootfs_path() != before
    monkeypatch.undo()
    monkeypatch.setattr(nspawn_rootfs, "PACKAGES", nspawn_rootfs.PACKAGES + ("curl",))
    assert nspawn_rootfs.rootfs_path() != before
    monkeypatch.undo()
    assert nspawn_rootfs.rootfs_path() == before
