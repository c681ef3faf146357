"""The registry: entry-point discovery, duplicates, unknown names, broken plugins."""

import textwrap
from importlib.metadata import EntryPoint

import pytest

import mdnext
from mdnext import registry
from mdnext.registry import Registry, RegistryError

FAKE_PLUGIN = textwrap.dedent(
    '''
    import numpy as np
    from mdnext.frames import Frames
    from mdnext.plugin import ReaderPlugin

    class FakeReader(ReaderPlugin):
        name = "fake"
        formats = frozenset({"fake"})

        def read(self, path, fmt, *, topology=None, select=None):
            n = int(path.read_text())
            return Frames(positions=np.arange(n * 3.0).reshape(1, n, 3), species=["Xx"] * n)
    '''
)


@pytest.fixture
def fake_plugin(tmp_path, monkeypatch):
    """A third-party reader package installed only through a (monkeypatched) entry point."""
    (tmp_path / "fake_mdnext_plugin.py").write_text(FAKE_PLUGIN)
    monkeypatch.syspath_prepend(str(tmp_path))
    original = registry.entry_points

    def entry_points(group):
        found = list(original(group=group))
        if group == "mdnext.readers":
            found.append(EntryPoint("fake", "fake_mdnext_plugin:FakeReader", group))
            found.append(EntryPoint("broken", "no_such_module_anywhere:Reader", group))
        return found

    monkeypatch.setattr(registry, "entry_points", entry_points)
    monkeypatch.setattr(registry, "readers", Registry("mdnext.readers", "reader"))


def test_third_party_reader_through_entry_point(fake_plugin, tmp_path):
    path = tmp_path / "four.fake"
    path.write_text("4")
    with pytest.warns(UserWarning, match="skipping reader plugin 'broken'"):
        frames = mdnext.load(path)
    assert frames.n_atoms == 4
    assert frames.source["reader"] == "fake"
    assert {"fake", "npz", "mdanalysis", "ase"} <= set(registry.readers.names())


def test_builtin_plugins_are_entry_points():
    assert {"npz", "mdanalysis", "ase"} <= set(registry.readers.names())
    assert {"npz", "mdanalysis", "ase"} <= set(registry.writers.names())


def test_duplicate_and_unknown_names():
    reg = Registry("mdnext.test-nothing", "widget")
    reg.register("a", object())
    with pytest.raises(RegistryError, match="registered twice"):
        reg.register("a", object())

    @reg.register("b")
    class B:  # noqa: D401 - a decorated entry
        pass

    assert reg.get("b") is B
    with pytest.raises(RegistryError, match="unknown widget 'c'; known: a, b"):
        reg.get("c")
    assert "a" in reg and list(reg) == ["a", "b"]


def test_duplicate_entry_point_is_an_error(monkeypatch):
    def entry_points(group):
        return [EntryPoint("x", "numpy:zeros", group), EntryPoint("x", "numpy:ones", group)]

    monkeypatch.setattr(registry, "entry_points", entry_points)
    with pytest.raises(RegistryError, match="registered twice"):
        Registry("mdnext.readers", "reader").names()
