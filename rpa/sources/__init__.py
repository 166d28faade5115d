"""Where a PDF comes from: HTTP today."""
