"""The PDF work: the extraction pool, the extractors and the key-outcome analysis."""

#: the extractors `rpa.extract.pdf.extract_pdf` knows (here, so that the main process can check
#: a name without importing pypdf: only the extraction processes need it)
EXTRACTORS = ("pypdf", "pdfium")
