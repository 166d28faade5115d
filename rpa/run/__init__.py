"""A run: preparing the queue, then one event loop working it until nothing is left.

Before the loop (blocking, in the CLI's thread): `prepare` (checks, queue the IDs, index tars
with `queue_tars`, join a metadata file with `join_metadata`). On the loop: `runner.Runner`
(the life cycle) and its parts, one concern each: `feeder` (claims and workers), `heartbeat`
(leases, reclaims, upkeep), `job` (the work on one paper), `policy` (what a failure means),
`disk` (the disk guard), `memory` (the memory governor), `metadata` (the metadata stage),
`source` (opening the PDF source), `clients` (HTTP clients), `backoff` (retry timing),
`tally` (counts), `progress` and `snapshot` (what the display is given); `demo` (the offline
demo's mirror and IDs).
"""
