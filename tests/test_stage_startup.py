"""What a stage's runner process imports before its notebook's kernel starts: every notebook
stage pays it (benchmarks/repro_time.py). Each check runs in a fresh interpreter, since this
test process has imported everything already."""

import subprocess
import sys


def fresh_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=False, timeout=120)


def test_the_stage_runner_does_not_import_mlflow_or_pandas():
    result = fresh_python(
        "import sys\n"
        "import starry_guide.cli\n"
        "from starry_guide.pipeline.stage import run_stage\n"
        "print(sorted(m for m in ('mlflow', 'pandas', 'sklearn') if m in sys.modules))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_papermill_comes_without_the_iri_grammars_and_they_stay_importable():
    result = fresh_python(
        "import sys\n"
        "from starry_guide.pipeline.stage import import_papermill\n"
        "papermill = import_papermill()\n"
        "print(papermill.__name__, 'jsonschema' in sys.modules,"
        " 'rfc3987_syntax' in sys.modules)\n"
        "import rfc3987_syntax\n"
        "print(rfc3987_syntax.is_valid_syntax('iri', 'https://example.org/a'))\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["papermill", "True", "False", "True"]


def test_papermill_is_imported_as_usual_once_jsonschema_is_loaded():
    result = fresh_python(
        "import sys\n"
        "import jsonschema\n"
        "from starry_guide.pipeline.stage import import_papermill\n"
        "print(import_papermill().__name__, 'rfc3987_syntax' in sys.modules)\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["papermill", "True"]


def test_the_docs_mkdocs_command_builds_strictly_and_fails_on_a_broken_link(tmp_path):
    from starry_guide.docs.pages import MKDOCS_COMMAND

    (tmp_path / "docs").mkdir()
    (tmp_path / "mkdocs.yml").write_text("site_name: t\nvalidation:\n  links:\n"
                                         "    not_found: warn\n", encoding="utf-8")
    page = tmp_path / "docs" / "index.md"

    def build() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", MKDOCS_COMMAND, "build", "--strict",
                               "--site-dir", str(tmp_path / "site")], cwd=tmp_path,
                              capture_output=True, text=True, check=False, timeout=120)

    page.write_text("# t\n\n[gone](missing.md)\n", encoding="utf-8")
    failed = build()
    assert failed.returncode != 0
    assert "missing.md" in failed.stderr
    page.write_text("# t\n\nfine\n", encoding="utf-8")
    assert build().returncode == 0
    assert (tmp_path / "site" / "index.html").is_file()
