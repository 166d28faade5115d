"""Example user stages for rpa (docs/stages.md): `examples.keyphrases` (CPU, kind process)
and `examples.post_record` (async, posts each record to an HTTP API)."""
