"""p2pchain benchmarks: figures printed as ratios to raw limits measured in the same run."""
