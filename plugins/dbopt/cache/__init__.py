"""Cache warming (week-17 plan, seed 002 day 10): hot read-only statements into Redis, and the hit ratio.

``warm`` runs the statements through the target's own read path and writes their results with a TTL in
pipelined batches; ``stats`` reads Redis ``INFO stats`` so the hit ratio is a measured figure. No Airflow.
"""
