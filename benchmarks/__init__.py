"""pytest-benchmark suites of vem (not collected by the default `pytest`; run `pytest benchmarks/`)
and the script that turns their recorded results into the README table: `python -m benchmarks.report`."""
