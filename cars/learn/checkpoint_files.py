"""The files of a run's checkpoint folder, named apart from the code that writes them.

Whoever only lists a run's folders (:mod:`cars.runs`, read by Tune's trial drivers
and the report) needs the names, not torch and timm.
"""

CHECKPOINT_FILE = "checkpoint.pt"
HISTORY_FILE = "history.json"
