"""The README's quickstart runs as written: a sync flow pauses, the CLI resumes it."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mypy.api
import pytest

README = Path(__file__).resolve().parent.parent / "README.md"


def quickstart() -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)
    return blocks[0]


def test_quickstart_pauses_and_cli_resumes(tmp_path: Path) -> None:
    # Given the quickstart saved as a script
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart())
    env = dict(os.environ)
    # When it runs and pauses
    proc = subprocess.Popen(
        [sys.executable, str(script)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("flowbus resume ")
        run_id = line.split()[2]
        # Then the printed CLI command resumes it
        cli = Path(sys.executable).with_name("flowbus")
        resumed = subprocess.run(
            [str(cli), "resume", run_id, "--input", '{"approved": true}'],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert resumed.returncode == 0, resumed.stderr
        out, _ = proc.communicate(timeout=30)
        assert out.strip() == "2026-11-27: 49.75 EUR"
        assert proc.returncode == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_quickstart_passes_mypy_strict(tmp_path: Path) -> None:
    script = tmp_path / "quickstart.py"
    script.write_text(quickstart())
    out, err, status = mypy.api.run(["--strict", "--no-incremental", str(script)])
    assert status == 0, out + err


def test_cli_resume_reports_invalid_input_per_field(tmp_path: Path) -> None:
    cli = Path(sys.executable).with_name("flowbus")
    result = subprocess.run(
        [str(cli), "resume", "00000000-0000-0000-0000-000000000000", "--input", "{"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2


def semantics_examples() -> list[str]:
    """The examples of "Semantics worth knowing" (indented in their list items)."""
    section = README.read_text().split("## Semantics worth knowing", 1)[1].split("\n## ", 1)[0]
    blocks: list[str] = re.findall(r"  ```python\n(.*?)  ```", section, re.S)
    return ["\n".join(line.removeprefix("  ") for line in b.splitlines()) for b in blocks]


def said(example: str) -> str:
    """What an example prints, as the comment of its last line says."""
    return example.strip().splitlines()[-1].split("  # ", 1)[1]


def run_by_itself(example: str) -> bool:
    return "flowbus resume" not in example


def test_each_semantic_point_has_an_example() -> None:
    examples = semantics_examples()
    assert len(examples) == 5
    assert sum(not run_by_itself(e) for e in examples) == 1


@pytest.mark.parametrize("number", range(5))
def test_semantics_examples_print_what_their_comment_says(tmp_path: Path, number: int) -> None:
    example = semantics_examples()[number]
    if not run_by_itself(example):
        pytest.skip("driven through the CLI: see the validators test")
    script = tmp_path / "semantics.py"
    script.write_text(example)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == said(example)


@pytest.mark.timeout(180)
def test_semantics_examples_pass_mypy_strict(tmp_path: Path) -> None:
    paths = []
    for number, example in enumerate(semantics_examples()):
        path = tmp_path / f"semantics_{number}.py"
        path.write_text(example)
        paths.append(str(path))
    out, err, status = mypy.api.run(["--strict", "--no-incremental", *paths])
    assert status == 0, out + err


def test_the_validators_example_refuses_through_the_cli(tmp_path: Path) -> None:
    [example] = [e for e in semantics_examples() if not run_by_itself(e)]
    script = tmp_path / "validators.py"
    script.write_text(example)
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    cli = Path(sys.executable).with_name("flowbus")
    try:
        assert proc.stdout is not None
        line = shlex.split(proc.stdout.readline())
        assert line[:2] == ["flowbus", "resume"]
        # the printed line, as pasted: the validator refuses, the run still waits
        refused = subprocess.run([str(cli), *line[1:]], capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip() == "invalid quantity: Value error, quantity must be even"
        resumed = subprocess.run(
            [str(cli), "resume", line[2], "--input", '{"quantity": 4}'],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert resumed.returncode == 0, resumed.stderr
        out, _ = proc.communicate(timeout=60)
        assert out.strip() == "4" == said(example).split(",")[0]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
