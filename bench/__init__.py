"""Benchmarks: `make bench`. Figures are ratios against a bare endpoint measured in the same run."""
