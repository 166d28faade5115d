"""The run: its life cycle, the work on one paper, the gates and the measurements."""
