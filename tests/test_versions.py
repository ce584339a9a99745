"""The installed versions against requirements.txt's pins (scembed.versions)."""

from __future__ import annotations

from scembed.versions import read_pins, version_mismatches


def test_version_mismatches_name_the_package_and_the_fix(tmp_path):
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("scanpy==1.11.5\nscipy==1.17.1\ntorch==2.13.0\n# comment\n")
    assert read_pins(requirements) == {"scanpy": "1.11.5", "scipy": "1.17.1", "torch": "2.13.0"}
    same = {"scanpy": "1.11.5", "scipy": "1.17.1", "torch": "2.13.0+cpu"}  # local build tag
    assert version_mismatches(requirements=requirements, installed=same) == []
    other = {"scanpy": "1.10.4", "torch": "2.13.0"}  # scipy not installed here: skipped
    messages = version_mismatches(requirements=requirements, installed=other)
    assert len(messages) == 1
    assert "scanpy 1.10.4 is installed" in messages[0] and "scanpy==1.11.5" in messages[0]
    assert "pip install -r requirements.txt" in messages[0]
