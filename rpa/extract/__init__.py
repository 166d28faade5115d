"""The PDF work: the extraction pool, the extractors and the key-outcome analysis."""
