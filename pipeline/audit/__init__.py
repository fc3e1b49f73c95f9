"""`tracesieve audit`: the manual trace audit, automatic, over the traces a team already has
(files an OTel Collector wrote, a Kafka topic, stdin). See docs/audit.md.

- `inputs`: finding the inputs, telling their formats from their content, reading them.
- `partition`: spans to buckets by trace id, on disk; buckets to partitions.
- `chain`: the processors (groupbytrace -> the three enrichment processors ->
  cleanliness) configured from the same YAML as the streaming pipeline.
- `worker`: decoding and spilling; the two passes over a partition.
- `records`: what is kept of each classified trace, and the report's sums.
- `report`, `html`, `schema.json`: the report (terminal, JSON, HTML).
- `runner`: the main process.
"""
