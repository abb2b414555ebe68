"""The CI examples of docs/ci.md: what they install, the options they pass, and the cache they keep;
and the documentation itself: README.md stays short, and its links and docs/'s resolve."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from loso_helpers import install_open_recorder
from pytest_loso.ids import predictions_path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
CI_DOC = ROOT / "docs" / "ci.md"


def _yaml_blocks(path: Path) -> dict[str, str]:
    """The ```yaml blocks of a document, by their first line (the file they stand for, e.g. `# .gitlab-ci.yml`)."""
    blocks = re.findall(r"```yaml\n(.*?)```", path.read_text(encoding="utf-8"), re.S)
    return {block.splitlines()[0].strip(): block for block in blocks}


def _ci_blocks() -> list[str]:
    """The GitHub workflow and the GitLab job that gate pull requests against the report accepted on main."""
    blocks = _yaml_blocks(CI_DOC)
    wanted = ("# .github/workflows/loso.yml", "# .gitlab-ci.yml")
    assert all(name in blocks for name in wanted), f"expected the GitHub and the GitLab example in {CI_DOC}"
    return [blocks[name] for name in wanted]


def _gate_commands(block: str) -> list[str]:
    """The `pytest -m loso ...` command of a CI example, its continued (`\\`) or folded lines joined."""
    lines = block.splitlines()
    commands = []
    for i, line in enumerate(lines):
        if line.strip().startswith("pytest -m loso"):
            indent = len(line) - len(line.lstrip())
            command = [line.strip()]
            for rest in lines[i + 1:]:
                continued = command[-1].endswith("\\")
                if not rest.strip() or (not continued and len(rest) - len(rest.lstrip()) != indent):
                    break
                command.append(rest.strip())
            commands.append(" ".join(part.rstrip("\\").strip() for part in command))
    return commands


def _yaml(block: str) -> dict:
    from ruamel.yaml import YAML  # check-jsonschema's YAML reader (the test extra)

    return YAML(typ="safe").load(block)


def _gate_script(block: str) -> str:
    """The shell script of a CI example's gate step (GitHub: the step named gate; GitLab: its script item)."""
    data = _yaml(block)
    if "jobs" in data:
        (script,) = [step["run"] for step in data["jobs"]["loso-gate"]["steps"] if step.get("name") == "gate"]
    else:
        (script,) = [item for item in data["loso-gate"]["script"] if "pytest -m loso" in item]
    return script


def test_ci_examples_install_from_the_repository_not_the_index():
    for block in _ci_blocks():
        installs = re.findall(r"pip install (.+)", block)
        assert installs, block
        specs = re.findall(r'PYTEST_LOSO: "([^"]+)"', block)
        for install in installs:
            # the package is not published: a direct reference or a local path, never a bare name
            spec = specs[0] if install.strip() == '"$PYTEST_LOSO"' else install.strip().strip("'\"")
            assert "@ git+https://" in spec or spec.startswith(("./", ".[")), install


def test_ci_examples_keep_the_feature_cache_they_pass_to_the_gate():
    for block in _ci_blocks():
        commands = _gate_commands(block)
        assert len(commands) == 1, block
        cache = re.search(r"--loso-cache=(\S+)", commands[0])
        assert cache, commands[0]
        # the CI's cache saves and restores exactly that folder
        kept = re.findall(r"path: (\S+)", block) + re.findall(r"paths: \[(\S+?)/?\]", block)
        assert cache.group(1) in kept, (cache.group(1), kept)
        assert "corpus.lst" in block  # keyed on the corpus listing


def _run_script(script: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    # `pytest` as the CI image has it: this interpreter's, without writing .pytest_cache into the tree
    prelude = f'pytest() {{ "{sys.executable}" -m pytest -p no:cacheprovider "$@"; }}\n'
    return subprocess.run(["bash", "-e", "-c", prelude + script], cwd=cwd, env={**os.environ, **env},
                          capture_output=True, text=True, timeout=300)


def _branch_main_pr_main(script: str, root: Path, branch: dict[str, str], main: dict[str, str]) -> None:
    """One CI system's gate script, run as a branch, main, a PR and main again in ``root``."""
    accepted = root / "runs" / "accepted" / "loso_eval.json"
    report = root / "runs" / "loso_eval" / "loso_eval.json"
    (root / "runs" / "accepted").mkdir(parents=True)  # the download step made it, and found nothing
    first = _run_script(script, root, branch)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no report accepted on main yet: this run is not compared" in first.stdout
    assert "comparison" not in json.loads(report.read_text())
    assert not accepted.exists()
    for env in (main, branch, main):  # main accepts; a PR compares; main compares with it, then accepts
        done = _run_script(script, root, env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert accepted.is_file() and predictions_path(accepted).is_file()  # kept together
    assert json.loads(report.read_text())["comparison"]
    assert json.loads(report.read_text())["acceptance"]["accepted"] is True
    for written in ("runs/junit.xml", "runs/metrics.txt"):
        assert (root / written).is_file(), written


def test_ci_examples_run_as_written_on_a_branch_on_main_and_on_a_pull_request(gate):
    """Each example's gate script, in a tree laid out as the example expects: a branch before anything was
    accepted is not compared (no usage error); main accepts; a PR compares; main compares, then accepts.
    The GitHub and the GitLab sequence are independent (a tree each), so they run side by side."""
    from concurrent.futures import ThreadPoolExecutor

    root = gate.root / "github"
    root.mkdir()
    (root / "model" / "tiny").mkdir(parents=True)
    gate.runs.rename(root / "model" / "tiny" / "training_runs")
    (root / ".corpus").mkdir()
    gate.data_root.rename(root / ".corpus" / "netflix")
    gate.cache_dir.rename(root / ".loso-cache")
    shutil.copytree(root, gate.root / "gitlab", symlinks=True)
    github, gitlab = _ci_blocks()
    places = [(github, root, {"GITHUB_REF": "refs/heads/topic"}, {"GITHUB_REF": "refs/heads/main"}),
              (gitlab, gate.root / "gitlab", {"CI_COMMIT_BRANCH": "topic", "CI_DEFAULT_BRANCH": "main"},
               {"CI_COMMIT_BRANCH": "main", "CI_DEFAULT_BRANCH": "main"})]
    with ThreadPoolExecutor(max_workers=len(places)) as pool:
        done = [pool.submit(_branch_main_pr_main, _gate_script(block), tree, branch, main)
                for block, tree, branch, main in places]
        for future in done:
            future.result()  # re-raises a sequence's failed assertion here


def test_ci_examples_are_valid_workflows():
    """The GitHub workflow and the GitLab job against their published schemas (vendored by check-jsonschema)."""
    pytest.importorskip("check_jsonschema", reason="the test extra: pip install -e '.[test]'")
    blocks = _yaml_blocks(CI_DOC)
    schemas = {"# .github/workflows/loso.yml": "vendor.github-workflows",
               "# .github/workflows/promote.yml": "vendor.github-workflows", "# .gitlab-ci.yml": "vendor.gitlab-ci"}
    with tempfile.TemporaryDirectory() as folder:
        files: dict[str, list[str]] = {}  # schema -> the files checked against it, in one call
        for name, schema in schemas.items():
            path = Path(folder) / name.split("/")[-1]
            path.write_text(blocks[name], encoding="utf-8")
            files.setdefault(schema, []).append(str(path))
        checks = {schema: subprocess.Popen([sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *paths],
                                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
                  for schema, paths in files.items()}  # side by side: each is a process of its own
        for schema, process in checks.items():
            output, _ = process.communicate(timeout=120)
            assert process.returncode == 0, (schema, files[schema], output)


def test_the_github_workflow_runs_once_per_change_with_the_permissions_it_needs():
    github = _yaml(_ci_blocks()[0])
    triggers = github.get("on", github.get(True))  # YAML 1.1 reads a bare `on` as true
    assert set(triggers) == {"push", "pull_request"}
    assert triggers["push"] == {"branches": ["main"]}  # a branch is gated by its PR, not a second run
    assert github["permissions"]["checks"] == "write"  # the JUnit action publishes a check run
    assert github["permissions"]["actions"] == "read"  # the accepted report is an artifact of main
    steps = github["jobs"]["loso-gate"]["steps"]
    (download,) = [s for s in steps if "action-download-artifact" in s.get("uses", "")]
    assert "if" not in download  # main too: it compares with the previous main before accepting
    assert download["with"]["if_no_artifact_found"] != "fail"
    (upload,) = [s for s in steps if "upload-artifact" in s.get("uses", "") and s["with"]["name"] == "loso-accepted"]
    kept = upload["with"]["path"].split()
    assert kept == ["runs/accepted/loso_eval.json", "runs/accepted/loso_eval.predictions.npz"]
    gitlab = _yaml(_ci_blocks()[1])["loso-gate"]
    assert [rule["if"] for rule in gitlab["rules"]] == ['$CI_PIPELINE_SOURCE == "merge_request_event"',
                                                         "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH"]
    assert "loso_eval.predictions.npz" in " ".join(gitlab["script"])


def test_the_checkout_install_keeps_the_host_pytest_out_of_the_submodule(pytester):
    """docs/ci.md's pyproject snippet, in a host project with this repository checked out inside it."""
    (snippet,) = re.findall(r"```toml\n(.*?)```", CI_DOC.read_text(encoding="utf-8"), re.S)
    pytester.path.joinpath("pyproject.toml").write_text(snippet, encoding="utf-8")
    pytester.mkdir("tests").joinpath("test_host.py").write_text("def test_host():\n    pass\n")
    sub = pytester.mkdir("pytest-loso")
    sub.joinpath("conftest.py").write_text("raise RuntimeError('the submodule conftest was loaded')\n")
    sub.joinpath("tests").mkdir()
    sub.joinpath("tests", "test_sub.py").write_text("def test_sub():\n    assert False\n")
    for args in ((), (".",)):
        result = pytester.runpytest("-p", "no:cacheprovider", *args)
        result.assert_outcomes(passed=1)


def test_a_warm_cache_never_opens_the_yuvs(gate):
    """What docs/ci.md promises CI: with every cache file present the corpus is only listed."""
    opened = install_open_recorder(gate.pytester)
    run = gate.run()  # default extractor: a missing cache file would be computed from the YUVs
    assert run.result.ret == 0, run.output
    corpus = str(gate.data_root.resolve()) + "/"
    assert not [p for p in json.loads(opened.read_text()) if p.startswith(corpus)]
    assert all(not p.endswith(".yuv") for p in json.loads(opened.read_text()))


def test_the_readme_ci_snippet_runs_the_gate_command_of_the_full_example():
    """README.md's short CI snippet and docs/ci.md's GitHub workflow pass the gate the same options."""
    text = README.read_text(encoding="utf-8")
    section = text[text.index("## In CI\n"):]
    section = section[: section.index("\n## ", 1)]
    (snippet,) = re.findall(r"```sh\n(.*?)```", section, re.S)
    assert 'pip install "pytest-loso[vmaf] @ git+https://' in snippet
    folded = snippet[snippet.index("pytest -m loso"):].replace("\\\n", " ")
    readme_args = re.sub(r"#.*", "", folded).split()
    (github,) = _gate_commands(_ci_blocks()[0])
    github_args = github.replace('"$@"', "").split()
    assert readme_args == github_args + ["--loso-compare=runs/accepted/loso_eval.json"]
    assert "only where an accepted report was fetched" in folded and "--loso-accept" in folded
    assert "loso_eval.predictions.npz" in section  # kept beside the accepted report


def test_no_install_hint_names_the_package_on_the_index():
    """The package is not on the index: `pip install 'pytest-loso[plot]'` cannot work, in a message or a doc."""
    pages = [README, *sorted((ROOT / "docs").glob("*.md")), *sorted((ROOT / "pytest_loso").rglob("*.py"))]
    for page in pages:
        for line in page.read_text(encoding="utf-8").splitlines():
            if re.search(r"pip install\s+['\"]?pytest-loso\[", line):
                assert "@ git+" in line, f"{page.relative_to(ROOT)}: {line.strip()}"


def test_the_readme_stays_short():
    lines = README.read_text(encoding="utf-8").count("\n")
    assert lines < 200, f"README.md has {lines} lines: move details to docs/"


def _slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.M)}


def test_every_relative_link_in_the_docs_points_at_an_existing_file():
    pages = [README, ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    assert len(pages) > 3
    checked = 0
    for page in pages:
        text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:: not a file
                continue
            path, _, anchor = target.partition("#")
            linked = (page.parent / path).resolve() if path else page
            assert linked.is_file(), f"{page.relative_to(ROOT)}: {target} is not a file"
            if anchor and linked.suffix == ".md":
                assert anchor in _anchors(linked), f"{page.relative_to(ROOT)}: {target}: no such heading"
            checked += 1
    assert checked > 10
