"""`make demo` (tools/run_demo.py): the pipeline steps, the demo metrics and the picture gallery."""
