"""The README's quickstart runs as written: a sync flow pauses, the CLI resumes it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import mypy.api

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


def semantics_example() -> str:
    blocks: list[str] = re.findall(r"  ```python\n(.*?)  ```", README.read_text(), re.S)
    return "\n".join(line.removeprefix("  ") for line in blocks[0].splitlines())


def test_semantics_example_runs_as_its_comment_says(tmp_path: Path) -> None:
    script = tmp_path / "semantics.py"
    script.write_text(semantics_example())
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Reject: reason='too big'; then Approve(comment='')"
