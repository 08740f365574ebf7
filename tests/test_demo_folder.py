"""The demo only ever replaces a folder that an earlier demo made."""
from study.cli import main


def test_demo_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    (tmp_path / "precious.txt").write_text("keep me")
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "not an earlier demo's folder" in capsys.readouterr().err
    assert (tmp_path / "precious.txt").read_text() == "keep me"
