"""The benchmark machinery on a tiny load: every case runs and prints a valid record.
(The benchmarks themselves run only through `make bench`.)"""

from __future__ import annotations

import json
import subprocess
import sys

from benchmarks.run import CASES


def test_every_case_runs_and_writes_a_valid_record(tmp_path):
    res = subprocess.run(
        [
            *(sys.executable, "-m", "benchmarks.run", "--smoke", "--results", str(tmp_path)),
            *("--", "--spans-per-request", "10"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    assert "passthrough / floor, both per CPU-second:" in res.stdout
    for name in CASES:
        record = json.loads((tmp_path / f"{name}.json").read_text())
        assert record["case"] == name
        assert record["spans_per_s"] > 0
        assert record["payload"] == "synthetic" and record["spans_per_request"] == 10
        assert record["machine"]["protobuf_backend"]
    floor = json.loads((tmp_path / "floor.json").read_text())
    assert floor["decode_spans_per_s"] > 0 and floor["encode_spans_per_s"] > 0
    pt = json.loads((tmp_path / "passthrough.json").read_text())
    assert pt["collector_exit"] == 0 and pt["errors"] == {}
    assert 0 < pt["collector_cpu"] <= 1.5
    assert pt["spans_per_collector_cpu_s"] > 0


def test_payload_file_source_reads_the_file_exporters_proto_format(tmp_path):
    import struct

    from benchmarks.payload import load
    from pipeline.testing import sample_request

    path = tmp_path / "p.bin"
    with open(path, "wb") as fh:
        for seed in range(3):
            raw = sample_request(seed, n_spans=4).SerializeToString()
            fh.write(struct.pack(">I", len(raw)) + raw)
    p = load(f"file:{path}")
    assert p.span_counts == [4, 4, 4] and p.source == f"file:{path}"


def test_topology_benchmark_on_a_few_traces(capsys):
    from benchmarks import topology

    assert topology.main(["--traces", "30", "--max-batch", "5"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["traces"] == 30 and record["sidecar_requests"] > 30
    # the gateway with overwrite gets every value right; the benchmark's figures rest on it
    assert record["wrong_traces_gateway_overwrite"] == 0
    assert record["wrong_traces_sidecar"] > 0
