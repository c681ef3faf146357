"""Placeholder: being written."""
from mdnext.plugin import ReaderPlugin, WriterPlugin
class MDAnalysisReader(ReaderPlugin):
    name = "mdanalysis"
class MDAnalysisWriter(WriterPlugin):
    name = "mdanalysis"
