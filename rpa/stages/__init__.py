"""User-defined stages: the user's own analysis of each done paper, run by rpa (issue 22).

    spec       StageSpec, its parsing ([[stage]] tables, RPA_STAGE_* env vars, --stage flags)
    remember   the queue's stages: kept with its settings, the invocation's laid over them
    paper      rpa.Paper: what a stage is given (paths, the record, earlier stages' results)
    store      the checkpoints: the `stage_results` table (claims fenced by a lease token)
    policy     what a stage's failure means: retry, fail, or pause the stage (an outage)
    execute    how a stage is called: on the loop (async, each step timed: a step that blocks
               the loop is named), its own threads (a given-up one keeps its slot)
    procs      a process stage's processes: one per call in flight (a timeout kills its own)
    records    the outcome file rewritten with the results; noted first, repaired at start
    lane       one stage in a run: claim, gate, rate, call, checkpoint, pause on an outage
    phase      the run's stage phase: the lanes, fed with done papers, drained at the end

The queue keeps its stages with its settings (remember); rpa.run.prepare lays what the CLI
(rpa.cli.stage_options) names over them and hands the result to the Runner. This package's
__init__ imports nothing (rpa's own __init__ imports rpa.stages.paper for `rpa.Paper`).
"""
