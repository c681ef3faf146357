"""Placeholder: being written."""
from mdnext.plugin import ReaderPlugin, WriterPlugin
class ASEReader(ReaderPlugin):
    name = "ase"
class ASEWriter(WriterPlugin):
    name = "ase"
