"""`mlambda loadtest`: the spec's requirements as a command.

target.py (what to hit) -> bodies.py (unique requests, answers checked) -> a load
generator (wrk.py, or native.py when wrk is not installed) -> samples -> figures.py
(percentiles, throughput, verdicts) -> report.py (PNGs and JSON); scenarios.py runs
steady, burst, ramp and all.
"""
