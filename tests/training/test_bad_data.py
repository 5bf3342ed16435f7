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


# labels_outside_0_1 runs as a user runs it, in a subprocess: test_set_reaches_data_preparation.
@pytest.mark.parametrize("case", sorted(set(CASES) - {"labels_outside_0_1"}))
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


def _train_cli(*args: str):
    """``python -m training.cli train ...`` in a subprocess, as a user runs it (README)."""
    import subprocess
    import sys

    from conftest import REPO

    return subprocess.run([sys.executable, "-m", "training.cli", "train", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=600)


def test_set_reaches_data_preparation(tmp_path, ci_encoder):
    """The labels_outside_0_1 case through the console entry point; --set split_by_group=False reaches the
    prepared splits (the run then stops at validation, nothing downstream runs, nothing is pushed)."""
    write, expected = CASES["labels_outside_0_1"]
    data = tmp_path / "data.csv"
    write(data)
    proc = _train_cli("--profile", "ci", "--data", f"csv:{data}", "--set", "split_by_group=False",
                      "--model-base", str(tmp_path / "models"), "--work-dir", str(tmp_path / "work"),
                      "--encoder", ci_encoder)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "stopped at data validation" in proc.stderr
    assert expected in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "work" / "pipeline_root" / "Transform").exists()
    assert not (tmp_path / "models").exists() or not any((tmp_path / "models").iterdir())
    (info,) = (tmp_path / "work" / "data").glob("*/splits.json")
    assert json.loads(info.read_text())["split_by_group"] is False


@pytest.mark.parametrize("item, expected", [("no_such_field=1", "FIELD one of"),
                                            ("split_by_group=maybe", "split_by_group expects bool"),
                                            ("train_steps=1.5", "train_steps expects int")])
def test_bad_set_is_a_one_line_error(tmp_path, item, expected):
    proc = _train_cli("--profile", "ci", "--set", item, "--model-base", str(tmp_path / "m"),
                      "--work-dir", str(tmp_path / "w"))
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and f"bad --set {item!r}" in errors[0] and expected in errors[0], proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and not (tmp_path / "w").exists()
