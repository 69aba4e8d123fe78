"""Ablation sweeps at toy scale (tools/ablate.py): per-run metrics, the sweep's table and plot (`report`)."""
