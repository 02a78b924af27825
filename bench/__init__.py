"""`make bench`: throughput and latency of sessionflow against baselines measured in the same run."""
