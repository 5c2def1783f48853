"""`theia-eval` entry point: verbs, registry table, JSON, errors with non-zero exit."""
import json

from theia_eval.cli import main


def test_help_lists_verbs(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "encoders" in out and "quickstart" in out


def test_unknown_verb_exits_nonzero(capsys):
    assert main(["encoderz"]) == 2
    assert "Did you mean: encoders" in capsys.readouterr().err


def test_encoders_json_has_columns(capsys):
    assert main(["encoders", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    row = next(r for r in rows if r["name"] == "pixels")
    assert row["grid"] == "16x16" and row["channels"] == 48 and row["offline"] == "yes"


def test_encode_image_reports_shapes(tmp_path, capsys):
    from skimage import data, io

    path = tmp_path / "cat.png"
    io.imsave(path, data.chelsea())
    assert main(["encoders", "pixels", "--image", str(path), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["tokens_shape"] == [1, 16, 16, 48] and rep["summary_shape"] == [1, 768]
    assert rep["token_norms"]["mean"][0] > 0


def test_encode_missing_image_and_bad_override(capsys):
    assert main(["encoders", "pixels", "--image", "/no/such.png"]) == 2
    assert "image file not found" in capsys.readouterr().err
    assert main(["encoders", "nosuchkey=1"]) == 2
    assert "bad config" in capsys.readouterr().err
