"""Time-series anomaly detection held to the Numenta Anomaly Benchmark (NAB): NAB's scoring (`nab`,
`labels`, `series`, `score`: `dlcli anomaly score`) and the streaming detectors behind
`dlcli anomaly detect` (`detect` says what they plug into). docs/commands/anomaly.md."""
