"""Scale benchmarks: build and annotate synthetic references of 10k-1M cells, HNSW tuning, component timings."""
