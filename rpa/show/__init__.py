"""What the user sees: the live table, the summary, status, OpenMetrics and export."""
