"""Run directories side by side: `dlcli runs` (a table of what is under a folder) and `dlcli runs compare`
(their loss curves on one plot). Reads what every stage writes (meta.json, metrics.jsonl) through
core.rundir; knows each stage only by the held-out figures it logs."""
