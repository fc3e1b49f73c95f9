"""The accuracy benchmark on a small run: its command works, its record has the shape the
benchmark table (docs/benchmarks.md) is made from, and the classifier is right on the
generator's traces."""

from __future__ import annotations

import json
import subprocess
import sys

from processors.cleanliness import CLASSES


def test_accuracy_record_on_300_traces():
    res = subprocess.run(
        [sys.executable, "-m", "benchmarks.accuracy", "--traces", "300", "--seed", "3"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["case"] == "accuracy" and record["traces"] == 300
    for name in ("default", "strict_single_model"):
        r = record[name]
        confusion = r["confusion"]
        assert set(confusion) == set(CLASSES)
        assert all(set(row) == set(CLASSES) for row in confusion.values())
        assert sum(sum(row.values()) for row in confusion.values()) == 300
        assert set(r["per_class"]) == set(CLASSES)
        for c in CLASSES:
            assert set(r["per_class"][c]) == {"precision", "recall", "f1", "support"}
            assert r["per_class"][c]["support"] == sum(confusion[c].values())
        # every class occurs, so the macro average means something
        assert all(r["per_class"][c]["support"] > 0 for c in CLASSES)
    assert record["macro_f1"] == record["default"]["macro_f1"] >= 0.99
    assert record["macro_f1_strict"] == record["strict_single_model"]["macro_f1"] >= 0.95
