"""`deepseek-operator usage-report` run as a subprocess over a generated audit trail
(rotations included): table, JSON, the limits of the flags and the budget refusal."""

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

Line = Callable[..., str]


def command() -> str:
    """The installed console script of the interpreter running the tests."""
    beside = Path(sys.executable).parent / "deepseek-operator"
    found = str(beside) if beside.is_file() else shutil.which("deepseek-operator")
    assert found, "deepseek-operator is not installed (make venv)"
    return found


def usage_report(audit: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([command(), "usage-report", "--audit-file", str(audit), *argv],
                          capture_output=True, text=True, check=False, timeout=120)


@pytest.fixture
def audit(tmp_path: Path, make_audit_line: Line) -> Path:
    """audit.jsonl.2 (oldest), .1 and the current file, as the gateway rotates them:
    two days, two deployments, a denied line and a torn one."""
    path = tmp_path / "audit.jsonl"
    (tmp_path / "audit.jsonl.2").write_text("".join(
        make_audit_line(f"user-{i % 4}", day="2026-11-28") + "\n" for i in range(20)))
    (tmp_path / "audit.jsonl.1").write_text("".join(
        make_audit_line(f"user-{i % 6}") + "\n" for i in range(30))
        + make_audit_line(None, allowed=False) + "\n")
    path.write_text("".join(make_audit_line(f"user-{i % 3}", "r2", None, prompt=1000)
                            + "\n" for i in range(12)) + '{"time": "2026-11-29T')
    return path


def test_a_table_then_json_then_a_refusal_past_the_daily_budget(audit: Path) -> None:
    ledger = audit.parent / "audit.jsonl.usage-ledger.json"
    done = usage_report(audit, "--day", "2026-11-29", "--day", "2026-11-28")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines()[0] == (
        "read 64 audit line(s) from 3 file(s): 62 allowed, 1 denied, 1 malformed (skipped)")
    assert "audit.jsonl:13: skipped, not JSON" in done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["DAY", "NAMESPACE", "DEPLOYMENT", "ROLE", "REQUESTS", "TOKENS"]
    assert [line.split()[:4] for line in lines[1:5]] == [
        ["2026-11-28", "ai", "r1", "user"], ["2026-11-28", "ai", "r2", "-"],
        ["2026-11-29", "ai", "r1", "user"], ["2026-11-29", "ai", "r2", "-"]]
    assert "requests scale 400 (sensitivity 100)" in done.stdout
    assert ledger.is_file()

    done = usage_report(audit, "--day", "2026-11-29", "--epsilon", "0.3", "-o", "json",
                        "--key", "ai/r2/-", "--max-cells-per-user", "1")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["spent"] == {"2026-11-29": 0.8}
    assert document["keys_from_data"] is False
    assert [(r["deployment"], r["role"]) for r in document["rows"]] == [("r2", None)]
    assert document["requests"]["scale"] == pytest.approx(1 * 50 / 0.15)
    assert document["tokens"]["scale"] == pytest.approx(1 * 50_000 / 0.15)

    before = ledger.read_bytes()
    done = usage_report(audit, "--day", "2026-11-29", "--epsilon", "0.25")
    assert done.returncode == 3
    assert done.stdout == ""
    assert "refused: 2026-11-29 has spent ε 0.8 of its daily budget 1" in done.stderr
    assert "--daily-budget" in done.stderr
    assert ledger.read_bytes() == before


def test_epsilon_above_half_is_refused_naming_the_flag(audit: Path) -> None:
    done = usage_report(audit, "--day", "2026-11-29", "--epsilon", "0.51")
    assert done.returncode == 2
    assert "argument --epsilon: 0.51 is above 0.5, the most one release may spend" in (
        done.stderr)
    assert done.stdout == ""
    assert not (audit.parent / "audit.jsonl.usage-ledger.json").exists()


LEDGER = ('{"version": 1, "days": {"2026-11-28": [{"epsilon": 0.25, '
          '"released_at": "2026-11-29T08:00:00.000Z", "budget": 1.0}]}}\n')


@pytest.mark.parametrize(("argv", "message"), [
    (["--max-tokens", "100000000000000000000"],
     "argument --max-tokens: must be >= 1 and <= 1000000000000, got '100000000000000000000'"),
    (["--max-requests", "9223372036854775808"],
     "argument --max-requests: must be >= 1 and <= 1000000000, got '9223372036854775808'"),
    (["--max-cells-per-user", "1001"],
     "argument --max-cells-per-user: must be >= 1 and <= 1000, got '1001'"),
    (["--max-requests", "-5"], "argument --max-requests: must be >= 1, got '-5'"),
    (["--max-requests", "0"], "argument --max-requests: must be >= 1, got '0'"),
    (["--max-tokens", "ten"], "argument --max-tokens: not an integer: 'ten'"),
    (["--epsilon", "1e-300"],
     "argument --epsilon: 1e-300 is below 0.001, the least one release may spend"),
    (["--epsilon", "nan"], "argument --epsilon: must be a number > 0, got 'nan'"),
    (["--requests-share", "1e-300"],
     "error: --requests-share 1e-300 of --epsilon 0.5 leaves requests ε 5e-301, below "
     "0.0001"),
])
def test_a_bad_bound_is_refused_naming_the_flag_and_charges_nothing(
        audit: Path, argv: list[str], message: str) -> None:
    """Each out-of-range flag: exit 2, one clear line naming it, no traceback, and the
    ledger byte for byte as it was (before: OpenDP crashed after charging ε)."""
    ledger = audit.parent / "ledger.json"
    ledger.write_text(LEDGER)
    done = usage_report(audit, "--day", "2026-11-29", "--ledger", str(ledger), *argv)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert ledger.read_text() == LEDGER
    assert not (audit.parent / "audit.jsonl.usage-ledger.json").exists()


def test_the_largest_bounds_at_the_least_epsilon_release(audit: Path) -> None:
    """The limits themselves work end to end: OpenDP calibrates, the ledger is charged."""
    done = usage_report(audit, "--day", "2026-11-29", "--epsilon", "0.001",
                        "--max-tokens", "1000000000000", "--max-requests", "1000000000",
                        "--max-cells-per-user", "1000", "-o", "json")
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    assert document["tokens"]["sensitivity"] == 10**15
    assert document["spent"] == {"2026-11-29": 0.001}


def test_a_failure_after_the_charge_exits_1_saying_the_budget_is_spent(
        audit: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """In process (to induce it): a failure once ε is charged is one error line, exit 1,
    never a traceback, and the ledger keeps the charge."""
    from deepseek_operator.cli import main
    from deepseek_operator.usage import mechanism

    def fail(self: mechanism.Calibrated, per_cell: object) -> mechanism.NoisyVector:
        raise RuntimeError("induced sampler failure")

    monkeypatch.setattr(mechanism.Calibrated, "release", fail)
    ledger = audit.parent / "ledger.json"
    code = main(["usage-report", "--audit-file", str(audit), "--day", "2026-11-29",
                 "--ledger", str(ledger)])
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    assert captured.err.splitlines()[-1].startswith(
        "error: the release failed after its budget was spent: ε 0.5 stays charged to "
        "2026-11-29")
    assert "RuntimeError: induced sampler failure" in captured.err
    assert json.loads(ledger.read_text())["days"]["2026-11-29"][0]["epsilon"] == 0.5
