"""The distribution: its name, its one version, its licence."""

from __future__ import annotations

from importlib.metadata import metadata, version

import pytest

import alignment
from alignment.cli import main as align
from tests.helpers import ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def test_one_version_and_the_distribution_name(capsys):
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] == "align-rlhf" and "version" not in project
    assert version("align-rlhf") == alignment.__version__
    assert align(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"align {alignment.__version__}"


def test_licence_and_one_ray_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0" and metadata("align-rlhf")["License-Expression"]
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("Apache License")
    extras = project["optional-dependencies"]
    rays = [d for deps in extras.values() for d in deps if d.startswith("ray")]
    assert rays == extras["ray"] and "align-rlhf[ray]" in extras["dev"]
