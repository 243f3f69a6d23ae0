"""The promotion gate: policies (:mod:`.policy`), paired statistics (:mod:`.stats`), the scores
an evaluation hands over (:mod:`.scores`), rule evaluation (:mod:`.rules`) and the decision
(:mod:`.decision`). Pure domain code: no database, no HTTP, no model loading."""
