"""A bad dataset stops the run at data validation with a clear message naming the feature (exit code 2)."""

import csv
import json

import pytest

GOOD = [("a warm, funny and moving film", 1), ("tedious and badly acted", 0)] * 20


def _write_csv(path, header, rows):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


CASES = {
    "missing_label_column": (lambda p: _write_csv(p, ["text"], [(t,) for t, _ in GOOD]), "feature 'label'"),
    "empty_texts": (lambda p: _write_csv(p, ["text", "label"], [*GOOD, ("", 1), ("   ", 0)] * 3), "feature 'text'"),
    "labels_outside_0_1": (lambda p: _write_csv(p, ["text", "label"], [*GOOD, ("so so", 2), ("bad", -1)] * 3),
                           "feature 'label'"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_dataset_stops_at_validation(case, tmp_path, ci_encoder, capsys):
    from training import cli

    write, expected = CASES[case]
    data = tmp_path / "data.csv"
    write(data)
    rc = cli.main(["train", "--profile", "ci", "--data", f"csv:{data}", "--model-base", str(tmp_path / "models"),
                   "--work-dir", str(tmp_path / "work"), "--encoder", ci_encoder])
    err = capsys.readouterr().err
    assert rc == 2, err[-3000:]
    assert "stopped at data validation" in err
    assert expected in err, err[-3000:]
    assert "Traceback" not in err
    # Nothing downstream of the gate ran and nothing was pushed.
    assert not (tmp_path / "work" / "pipeline_root" / "Transform").exists()
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())


def test_jsonl_source_reads_user_data(tmp_path):
    from training import data

    p = tmp_path / "d.jsonl"
    p.write_text("\n".join(json.dumps({"text": t, "label": lab}) for t, lab in GOOD))
    out = data.prepare(f"jsonl:{p}", tmp_path / "prep", seed=1)
    texts, labels = data.read_split(out, "train")
    # GOOD has 2 distinct texts: duplicates are dropped before splitting.
    assert sorted(set(labels.tolist())) in ([0, 1], [0], [1])
    assert set(texts) <= {t for t, _ in GOOD}
