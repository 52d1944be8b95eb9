"""The stage runner's failure message, the notebooks' source views, and refresh keys — on
real notebooks run by a real Jupyter kernel through Papermill."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat
import pytest

from starry_guide.pipeline import refresh, sources
from starry_guide.pipeline import stage as notebook

ROOT = Path(__file__).resolve().parents[1]


def _notebook(path: Path, cells: list) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    nb.cells = cells
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def _failing_cells() -> list:
    md, code = nbformat.v4.new_markdown_cell, nbformat.v4.new_code_cell
    return [
        md("# A stage that fails"),
        code("output_dir = None", metadata={"tags": ["parameters"]}),
        code("import pandas as pd\nframe = pd.DataFrame({'opaque': [1, 2]})"),
        md("The analyst's third code cell, as JupyterLab numbers it:"),
        code("total = frame['opaque'].sum()\nshare = frame['opaque_cloud_tenths'].mean()"),
        code("print('never reached')"),
    ]


@pytest.fixture()
def failing_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    project.mkdir()
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copyfile(ROOT / name, project / name)
    _notebook(project / "notebooks" / notebook.STAGE_NOTEBOOKS["prepare"], _failing_cells())
    return project


def test_a_failing_stage_names_the_analysts_cell_line_and_saved_notebook(failing_project):
    (failing_project / "reports" / "metrics").mkdir(parents=True)
    previous = failing_project / "reports" / "metrics" / "data.json"
    previous.write_text('{"stations": 3}\n')
    with pytest.raises(notebook.StageFailed) as raised:
        notebook.run_stage("prepare", failing_project)
    message = str(raised.value)
    # Papermill injected a parameters cell (execution count 4); the analyst's cell is [3]
    assert "cell [3] raised KeyError: 'opaque_cloud_tenths'" in message
    assert "Cell In[3], line 2" in message
    assert "share = frame['opaque_cloud_tenths'].mean()" in message  # their own line
    assert "\x1b[" not in message  # no terminal colour codes
    failed = failing_project / "reports" / "failed" / "01_prepare.ipynb"
    assert f"the failed notebook, with every output up to the error: {failed}" in message
    saved = json.loads(failed.read_text())
    assert any(o.get("ename") == "KeyError" for c in saved["cells"] for o in c.get("outputs", []))
    assert previous.read_text() == '{"stations": 3}\n'  # previous outputs kept


def test_source_view_keeps_every_cell_and_no_output(tmp_path):
    nb = _notebook(tmp_path / "a.ipynb", _failing_cells())
    view = sources.source_view(nb)
    assert "# # A stage that fails" in view and "# %% tags=['parameters']" in view
    assert "share = frame['opaque_cloud_tenths'].mean()" in view
    assert "never reached" in view and "outputs" not in view
    code_only = sources.source_view(nb, code_only=True)
    assert "A stage that fails" not in code_only and "never reached" in code_only


def test_outputs_do_not_change_the_view_but_edits_do(tmp_path):
    nb = _notebook(tmp_path / "a.ipynb", _failing_cells())
    before = sources.source_view(nb)
    data = json.loads(nb.read_text())
    data["cells"][2]["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "x"}]
    data["cells"][2]["execution_count"] = 7
    data["metadata"]["starry_guide"] = {"refreshed_from": "abc"}
    nb.write_text(json.dumps(data))
    assert sources.source_view(nb) == before
    data["cells"][3]["source"] = "Edited markdown."
    nb.write_text(json.dumps(data))
    assert sources.source_view(nb) != before


def test_refresh_keys_follow_code_upstream_and_any_edit_of_the_notebook(tmp_path):
    project = tmp_path / "project"
    refresh.copy_project(ROOT, project, with_code=True)
    shutil.copyfile(ROOT / "uv.lock", project / "uv.lock")
    keys = refresh.refresh_keys(project)
    train = project / "notebooks" / notebook.STAGE_NOTEBOOKS["train"]
    data = json.loads(train.read_text())
    markdown = next(i for i, c in enumerate(data["cells"]) if c["cell_type"] == "markdown")
    data["cells"][markdown]["source"] = ["An analyst's new sentence."]
    train.write_text(json.dumps(data))
    after_markdown = refresh.refresh_keys(project)
    # a markdown edit: only this notebook's outputs are out of date
    assert after_markdown["train"][1] != keys["train"][1]
    assert {s: after_markdown[s] for s in keys if s != "train"} == {
        s: keys[s] for s in keys if s != "train"}
    code = next(i for i, c in enumerate(data["cells"]) if c["cell_type"] == "code"
                and "parameters" not in c["metadata"].get("tags", []))
    data["cells"][code]["source"] = ["x = 1\n", *data["cells"][code]["source"]]
    train.write_text(json.dumps(data))
    after_code = refresh.refresh_keys(project)
    # a code edit may change what later notebooks read: they are out of date too
    later = list(notebook.STAGE_NOTEBOOKS)[list(notebook.STAGE_NOTEBOOKS).index("train") + 1:]
    assert after_code["prepare"] == keys["prepare"] and later
    assert all(after_code[s] != keys[s] for s in later)


def test_stage_commands_find_the_project_environment_from_a_plain_shell():
    """`dvc repro` runs `scripts/starry ...` with whatever PATH it was started with: from a
    plain shell (`.venv/bin/dvc repro`, nothing activated) the wrapper still finds starry."""
    import subprocess
    import sys

    plain = {"PATH": "/usr/bin:/bin", "HOME": str(Path.home())}
    envs = [{**plain, "VIRTUAL_ENV": str(Path(sys.executable).parent.parent)}]
    if (ROOT / ".venv" / "bin" / "starry").exists():
        envs.append(plain)  # no environment at all: the project's .venv
    for env in envs:
        result = subprocess.run([str(ROOT / "scripts" / "starry"), "--help"], cwd=ROOT,
                                env=env, capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stderr
        assert "notebook-sources" in result.stdout


def test_stage_commands_say_what_to_do_without_an_environment(tmp_path):
    import subprocess

    wrapper = tmp_path / "scripts" / "starry"  # a project with no .venv yet
    wrapper.parent.mkdir()
    shutil.copy2(ROOT / "scripts" / "starry", wrapper)
    result = subprocess.run([str(wrapper), "stage", "prepare"], cwd=tmp_path,
                            env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                            check=False)
    assert result.returncode == 127 and "run `make install`" in result.stderr


def test_refresh_keys_follow_the_stage_inputs_dvc_declares(tmp_path):
    project = tmp_path / "project"
    refresh.copy_project(ROOT, project, with_code=True)
    keys = refresh.refresh_keys(project)
    api = project / "src" / "starry_guide" / "serve" / "app.py"
    api.write_text(api.read_text() + "\n# an edit no notebook runs\n")
    assert refresh.refresh_keys(project) == keys
    evaluate = project / "src" / "starry_guide" / "core" / "evaluate.py"
    evaluate.write_text(evaluate.read_text() + "\n# an input of the train stage\n")
    after = refresh.refresh_keys(project)
    assert after["prepare"] == keys["prepare"]
    assert all(after[s] != keys[s] for s in list(notebook.STAGE_NOTEBOOKS)[1:])


def test_executed_reports_carry_no_refresh_key(tmp_path):
    """A stage's executed report must not depend on when its source was last refreshed."""
    nb = _notebook(tmp_path / "a.ipynb", _failing_cells())
    data = json.loads(nb.read_text())
    data["metadata"]["starry_guide"] = {"refreshed_from": "abc"}
    data["metadata"]["papermill"] = {"start_time": "2026-11-27T12:00:00", "parameters": {}}
    nb.write_text(json.dumps(data))
    notebook.strip_volatile_metadata(nb)
    stripped = json.loads(nb.read_text())["metadata"]
    assert "starry_guide" not in stripped and "start_time" not in stripped["papermill"]
