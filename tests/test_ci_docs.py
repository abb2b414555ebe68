"""The CI examples of docs/ci.md: what they install, the options they pass, and the cache they keep;
and the documentation itself: README.md stays short, and its links and docs/'s resolve."""

from __future__ import annotations

import json
import re
from pathlib import Path

from loso_helpers import install_open_recorder

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
    """The `pytest -m loso ...` command of a CI example, its folded lines joined."""
    lines = block.splitlines()
    commands = []
    for i, line in enumerate(lines):
        if line.strip().startswith("pytest -m loso"):
            indent = len(line) - len(line.lstrip())
            command = [line.strip()]
            for rest in lines[i + 1:]:
                if len(rest) - len(rest.lstrip()) != indent or not rest.strip():
                    break
                command.append(rest.strip())
            commands.append(" ".join(command))
    return commands


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


def test_ci_examples_run_as_written_on_main_then_on_a_pull_request(gate):
    """Each example's gate command, in a tree laid out as the example expects: main accepts, a PR compares."""
    root = gate.root
    (root / "model" / "tiny").mkdir(parents=True)
    gate.runs.rename(root / "model" / "tiny" / "training_runs")
    (root / ".corpus").mkdir()
    gate.data_root.rename(root / ".corpus" / "netflix")
    gate.cache_dir.rename(root / ".loso-cache")
    accepted = root / "runs" / "accepted" / "loso_eval.json"
    for block in _ci_blocks():
        (command,) = _gate_commands(block)
        # CI templating: the GitHub expression or GitLab's shell test that adds --loso-accept on main
        args = re.sub(r"\$\{\{.*?\}\}|\$\(.*?\)", "", command).split()[1:]
        accepted.unlink(missing_ok=True)
        accepted.parent.mkdir(parents=True, exist_ok=True)
        main = gate.pytester.runpytest("-p", "no:cacheprovider", *args, "--loso-accept")
        assert main.ret == 0, main.stdout.str()
        assert accepted.is_file()  # --loso-accept wrote the --loso-compare path
        pull_request = gate.pytester.runpytest("-p", "no:cacheprovider", *args)
        assert pull_request.ret == 0, pull_request.stdout.str()
        for written in ("runs/junit.xml", "runs/metrics.txt", "runs/loso_eval/loso_eval.json"):
            assert (root / written).is_file(), written
        assert json.loads((root / "runs/loso_eval/loso_eval.json").read_text())["comparison"]


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
    github_args = re.sub(r"\$\{\{.*?\}\}", "", github).split()
    assert readme_args == github_args
    assert "--loso-accept" in folded  # what main adds


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
