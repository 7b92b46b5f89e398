"""usage-report: parsing the audit trail, per-user bounds, ε limits, the budget ledger,
the output, and (statistically) the noise scale."""

import datetime
import json
import math
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_operator.usage import ledger, mechanism
from deepseek_operator.usage.contributions import Bounds, Cell, cells_in, contributions
from deepseek_operator.usage.limits import MAX_CELLS, MAX_REQUESTS, MAX_TOKENS, MIN_EPSILON
from deepseek_operator.usage.mechanism import (
    ALPHA,
    calibrated,
    cell_sum,
    check_epsilon,
    release,
)
from deepseek_operator.usage.report import to_json, to_table
from deepseek_operator.usage.run import (
    ReleaseFailedError,
    UsageError,
    UsageOptions,
    usage_report,
)
from deepseek_operator.usage.trail import (
    MalformedLineError,
    Request,
    audit_files,
    parse_line,
    read_trail,
)

Line = Callable[..., str]
DAY = datetime.date(2026, 11, 29)
R1 = Cell("ai", "r1", "user")
R2 = Cell("ai", "r2", None)
NOW = datetime.datetime(2026, 11, 30, 8, tzinfo=datetime.UTC)


# --- parsing -------------------------------------------------------------------------


def test_an_allowed_line_is_a_request_of_its_utc_day(make_audit_line: Line) -> None:
    request = parse_line(make_audit_line("alice", prompt=12, completion=304))
    assert request == Request(day=DAY, user="alice", cell=R1, tokens=316)


def test_a_role_of_null_and_unknown_token_counts_are_kept(make_audit_line: Line) -> None:
    request = parse_line(make_audit_line("bob", "r2", None, prompt=None, completion=None))
    assert request == Request(day=DAY, user="bob", cell=R2, tokens=0)


def test_a_denied_line_is_not_usage(make_audit_line: Line) -> None:
    assert parse_line(make_audit_line(None, allowed=False)) is None


@pytest.mark.parametrize("change", [
    lambda d: "not json",
    lambda d: "[1, 2]",
    lambda d: json.dumps({**d, "time": "yesterday"}),
    lambda d: json.dumps({**d, "time": "2026-13-40T00:00:00.000Z"}),
    lambda d: json.dumps({**d, "allowed": "yes"}),
    lambda d: json.dumps({**d, "user": "alice"}),
    lambda d: json.dumps({**d, "user": {"name": None}}),
    lambda d: json.dumps({**d, "deployment": None}),
    lambda d: json.dumps({**d, "role": 7}),
    lambda d: json.dumps({**d, "prompt_tokens": -1}),
    lambda d: json.dumps({**d, "completion_tokens": 1.5}),
    lambda d: json.dumps({**d, "completion_tokens": True}),
    lambda d: json.dumps({k: v for k, v in d.items() if k != "prompt_tokens"}),
])
def test_lines_not_shaped_as_the_gateway_writes_them_are_malformed(
        make_audit_line: Line, change: Callable[[dict[str, object]], str]) -> None:
    with pytest.raises(MalformedLineError):
        parse_line(change(json.loads(make_audit_line("alice"))))


def test_rotations_are_read_oldest_first_and_other_suffixes_ignored(tmp_path: Path) -> None:
    audit = tmp_path / "audit.jsonl"
    for name in ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2", "audit.jsonl.10",
                 "audit.jsonl.usage-ledger.json", "audit.jsonl.x1", "other.jsonl.1"]:
        (tmp_path / name).write_text("")
    assert [p.name for p in audit_files(audit)] == [
        "audit.jsonl.10", "audit.jsonl.2", "audit.jsonl.1", "audit.jsonl"]


def test_a_bad_trail_is_counted_and_warned_about_never_fatal(
        tmp_path: Path, make_audit_line: Line) -> None:
    audit = tmp_path / "audit.jsonl"
    (tmp_path / "audit.jsonl.1").write_bytes(
        make_audit_line("alice").encode() + b"\n\xff\xfe binary\n{\"time\": 1}\n")
    audit.write_text(make_audit_line(None, allowed=False) + "\n\n"
                     + make_audit_line("bob")[:40])  # a line cut short by a crash
    trail = read_trail([audit])
    assert (trail.lines, len(trail.requests), trail.denied, trail.malformed) == (5, 1, 1, 3)
    assert trail.warnings[0].endswith("audit.jsonl.1:2: skipped, not JSON")
    with pytest.raises(FileNotFoundError):
        read_trail([tmp_path / "missing.jsonl"])


# --- bounds --------------------------------------------------------------------------


def requests_of(user: str, cell: Cell, count: int, tokens: int = 100,
                day: datetime.date = DAY) -> list[Request]:
    return [Request(day=day, user=user, cell=cell, tokens=tokens) for _ in range(count)]


def test_a_user_counts_in_at_most_max_cells_cells_the_busiest_kept() -> None:
    r3 = Cell("ai", "r3", "admin")
    requests = (requests_of("alice", R1, 2) + requests_of("alice", R2, 5)
                + requests_of("alice", r3, 1) + requests_of("bob", R1, 1)
                + requests_of("bob", R1, 4, day=DAY + datetime.timedelta(days=1)))
    cells = cells_in(requests)
    assert cells == (R1, R2, r3)
    day = contributions(requests, DAY, cells, max_cells=2)
    assert [[(u.requests, u.tokens) for u in users] for users in day.per_cell] == [
        [(2, 200), (1, 100)], [(5, 500)], []]
    assert (day.dropped, day.outside) == (1, 0)
    only_r1 = contributions(requests, DAY, (R1,), max_cells=2)
    assert (len(only_r1.per_cell[0]), only_r1.outside) == (2, 6)


def test_bounds_below_one_are_refused() -> None:
    with pytest.raises(ValueError, match="max_tokens"):
        Bounds(max_cells=1, max_requests=1, max_tokens=0)


@pytest.mark.parametrize("changes", [{"max_cells": MAX_CELLS + 1},
                                     {"max_requests": MAX_REQUESTS + 1},
                                     {"max_tokens": MAX_TOKENS + 1},
                                     {"max_tokens": 10**20}])
def test_bounds_above_their_limit_are_refused(changes: dict[str, int]) -> None:
    values = {"max_cells": 1, "max_requests": 1, "max_tokens": 1} | changes
    (name, value), = changes.items()
    with pytest.raises(ValueError, match=rf"{name} must be >= 1 and <= \d+, got {value}"):
        Bounds(**values)


def test_the_largest_bounds_calibrate_at_the_smallest_epsilon_of_a_metric() -> None:
    """The limits keep OpenDP inside i64: the sensitivity at the caps and the scale for
    the least ε (MIN_EPSILON split in two) are built without error, scale ~ Δ / ε."""
    for upper in (MAX_REQUESTS, MAX_TOKENS):
        noise = calibrated(upper, MAX_CELLS, MIN_EPSILON / 2)
        assert noise.sensitivity == MAX_CELLS * upper
        assert noise.scale == pytest.approx(noise.sensitivity / (MIN_EPSILON / 2))
        assert noise.epsilon <= MIN_EPSILON / 2


def test_an_epsilon_too_small_for_any_scale_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="no finite noise scale"):
        calibrated(MAX_TOKENS, 2, 1e-300)


usages = st.lists(st.tuples(st.sampled_from(["a", "b", "c", "d"]),
                            st.sampled_from([R1, R2, Cell("ai", "r3", "x")]),
                            st.integers(0, 5000)), max_size=40)


@settings(max_examples=60, deadline=None)
@given(usages, st.sampled_from(["a", "b", "c", "d"]), st.integers(1, 3),
       st.integers(1, 50))
def test_one_users_day_moves_the_clamped_sums_by_at_most_the_sensitivity(
        rows: list[tuple[str, Cell, int]], victim: str, max_cells: int, upper: int) -> None:
    """The bound the noise is calibrated to: removing any one user changes the vector of
    clamped per-cell sums by at most max_cells x upper in L1 (per metric: here tokens)."""
    requests = [Request(day=DAY, user=u, cell=c, tokens=t) for u, c, t in rows]
    cells = (R1, R2, Cell("ai", "r3", "x"))
    summed = cell_sum(upper)

    def sums(kept: list[Request]) -> list[int]:
        day = contributions(kept, DAY, cells, max_cells)
        return [int(summed([u.tokens for u in users])) for users in day.per_cell]

    with_victim = sums(requests)
    without = sums([r for r in requests if r.user != victim])
    sensitivity = release([[0]], upper, max_cells, 0.5).sensitivity
    assert sensitivity == max_cells * upper
    assert sum(abs(a - b) for a, b in zip(with_victim, without, strict=True)) <= sensitivity


# --- ε and the mechanism -------------------------------------------------------------


@pytest.mark.parametrize("epsilon", [0.5000001, 0.7, 1.0, 0.0, -0.1, math.nan, math.inf,
                                     0.000999, 1e-300])
def test_epsilon_above_half_or_not_positive_is_refused(epsilon: float) -> None:
    with pytest.raises(ValueError, match=r"at most 0\.5"):
        check_epsilon(epsilon)


def test_opendp_clamps_each_users_value_before_the_sum() -> None:
    """With a huge ε (not allowed in a report; here only to see the clamped sums) the
    noise scale is 0.005: P(noise != 0) = 2p / (1 + p), p = exp(-200), about 1e-87."""
    noisy = release([[1000, 3], [-7, 20], []], upper=50, max_cells=1, epsilon=10_000.0)
    assert noisy.values == (53, 20, 0)


def test_the_scale_is_the_sensitivity_over_epsilon() -> None:
    noisy = release([[3, 70], [], [10]], upper=50, max_cells=2, epsilon=0.25)
    assert noisy.sensitivity == 100
    assert noisy.scale == pytest.approx(100 / 0.25, rel=1e-6)
    assert 0.25 * (1 - 1e-6) <= noisy.epsilon <= 0.25
    assert len(noisy.values) == 3
    # discrete Laplace: P(|X| >= k) = 2 p^k / (1 + p), p = exp(-1/scale)
    p = math.exp(-1 / noisy.scale)
    assert 2 * p ** math.floor(noisy.accuracy + 1) / (1 + p) <= ALPHA


@pytest.mark.parametrize(("upper", "max_cells", "epsilon"), [(5, 2, 0.25), (50_000, 2, 0.1)])
def test_the_noise_has_the_reported_scale_over_many_releases(
        upper: int, max_cells: int, epsilon: float) -> None:
    """200 releases of 200 cells: 40 000 noise draws (OpenDP's sampler is seeded by the
    OS's CSPRNG, so each run differs). Discrete Laplace of scale b, p = exp(-1/b), has
    E|X| = 2p / (1 - p^2) and P(|X| > a) = 2 p^(floor(a)+1) / (1 + p).

    Tolerances and the chance of a false failure: the mean of |X| within 10 % (|X| is
    about exponential; Chernoff for 40 000 draws: about exp(-187), far below 1e-50); the
    mean of X within 0.05 b (standard error 0.007 b, ~7 of them; Chernoff: below 1e-10);
    the share of draws beyond the reported 95 % accuracy within 0.025 of its exact value
    (Hoeffding: 2 exp(-2 x 40 000 x 0.025^2) = 4e-22). All six checks together fail by
    chance less than once in 1e9 runs."""
    truth = [[(cell * 7919) % (upper * 3) for _ in range(cell % 4)] for cell in range(200)]
    clamped = [sum(min(v, upper) for v in values) for values in truth]
    noise: list[int] = []
    scales = set()
    accuracy = 0.0
    for _ in range(200):
        noisy = release(truth, upper, max_cells, epsilon)
        scales.add(noisy.scale)
        accuracy = noisy.accuracy
        noise += [v - c for v, c in zip(noisy.values, clamped, strict=True)]
    (scale,) = scales
    assert scale == pytest.approx(max_cells * upper / epsilon, rel=1e-6)
    p = math.exp(-1 / scale)
    mean_abs = sum(abs(x) for x in noise) / len(noise)
    assert mean_abs == pytest.approx(2 * p / (1 - p * p), rel=0.10)
    assert abs(sum(noise) / len(noise)) <= 0.05 * scale
    beyond = sum(abs(x) > accuracy for x in noise) / len(noise)
    assert beyond == pytest.approx(2 * p ** (math.floor(accuracy) + 1) / (1 + p), abs=0.025)


# --- the ledger ----------------------------------------------------------------------


def test_releases_add_up_per_day_and_one_past_the_budget_leaves_the_ledger_alone(
        tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    next_day = DAY + datetime.timedelta(days=1)
    assert ledger.charge(path, [DAY], 0.5, 1.0, "t1") == {DAY: 0.5}
    assert ledger.charge(path, [DAY, next_day], 0.3, 1.0, "t2") == {DAY: 0.8, next_day: 0.3}
    before = path.read_bytes()
    with pytest.raises(ledger.BudgetExceededError, match=r"2026-11-29 has spent ε 0\.8") as info:
        ledger.charge(path, [next_day, DAY], 0.3, 1.0, "t3")
    assert info.value.spent == pytest.approx(0.8)
    assert info.value.budget == 1.0
    assert path.read_bytes() == before
    assert ledger.charge(path, [DAY], 0.2, 1.0, "t4") == {DAY: pytest.approx(1.0)}
    days = json.loads(path.read_text())["days"]
    assert [e["released_at"] for e in days["2026-11-29"]] == ["t1", "t2", "t4"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".ledger.json.")]


def test_a_file_that_is_not_a_ledger_is_refused_and_kept(tmp_path: Path) -> None:
    path = tmp_path / "ledger.json"
    for text in ["{", '{"version": 1, "days": {"2026-11-29": [{"epsilon": -1}]}}',
                 '{"version": 2, "days": {}}', '{"version": 1, "days": {"soon": []}}']:
        path.write_text(text)
        with pytest.raises(ledger.LedgerError, match="not a usage-report ledger"):
            ledger.charge(path, [DAY], 0.1, 1.0, "t")
        assert path.read_text() == text


def test_releases_at_once_never_overspend(tmp_path: Path) -> None:
    """Eight releases of 0.25 against a budget of 1.0, at once: the lock lets exactly
    four through, and the ledger records those four."""
    path = tmp_path / "ledger.json"
    outcomes: list[str] = []
    start = threading.Barrier(8)

    def one(index: int) -> None:
        start.wait()
        try:
            ledger.charge(path, [DAY], 0.25, 1.0, f"t{index}")
            outcomes.append("charged")
        except ledger.BudgetExceededError:
            outcomes.append("refused")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["charged"] * 4 + ["refused"] * 4
    assert len(json.loads(path.read_text())["days"]["2026-11-29"]) == 4


# --- a whole report ------------------------------------------------------------------


def options(tmp_path: Path, **changes: object) -> UsageOptions:
    values: dict[str, object] = {
        "audit_files": (tmp_path / "audit.jsonl",), "days": (DAY,), "keys": None,
        "bounds": Bounds(max_cells=2, max_requests=50, max_tokens=50_000),
        "epsilon": 0.5, "requests_share": 0.5, "daily_budget": 1.0,
        "ledger": tmp_path / "ledger.json"}
    values.update(changes)
    return UsageOptions(**values)


def test_a_report_as_json_and_as_table(tmp_path: Path, make_audit_line: Line) -> None:
    (tmp_path / "audit.jsonl").write_text("".join(
        make_audit_line(user) + "\n" for user in ["alice", "bob", "alice"])
        + make_audit_line("carol", "r2", None) + "\n")
    release, diagnostics = usage_report(options(tmp_path), NOW)
    assert diagnostics.lines()[0] == (
        "read 4 audit line(s) from 1 file(s): 4 allowed, 0 denied, 0 malformed (skipped)")
    document = json.loads(to_json(release))
    assert document["spent"] == {"2026-11-29": 0.5}
    assert document["keys_from_data"] is True
    assert [(r["deployment"], r["role"]) for r in document["rows"]] == [
        ("r1", "user"), ("r2", None)]
    assert document["requests"]["scale"] == pytest.approx(400)
    assert document["tokens"]["scale"] == pytest.approx(400_000)
    assert document["requests"]["sensitivity"] == 100
    assert document["released_at"] == "2026-11-30T08:00:00.000Z"
    table = to_table(release)
    assert table.splitlines()[0].split() == [
        "DAY", "NAMESPACE", "DEPLOYMENT", "ROLE", "REQUESTS", "TOKENS"]
    assert table.splitlines()[2].split()[:4] == ["2026-11-29", "ai", "r2", "-"]
    assert "requests scale 400 (sensitivity 100), tokens scale 400000" in table
    assert "keys: taken from the audit trail, not protected" in table


def test_fixed_keys_release_empty_cells_too(tmp_path: Path, make_audit_line: Line) -> None:
    (tmp_path / "audit.jsonl").write_text(
        make_audit_line("alice") + "\n" + make_audit_line("bob", "r2", None) + "\n")
    idle = Cell("ml", "idle", None)
    release, diagnostics = usage_report(options(tmp_path, keys=(idle, R1, idle)), NOW)
    assert release.cells == (R1, idle)
    assert len(release.requests.values) == 2
    assert not release.keys_from_data
    assert diagnostics.outside == 1


def test_a_refused_report_charges_nothing(tmp_path: Path, make_audit_line: Line) -> None:
    (tmp_path / "audit.jsonl").write_text(make_audit_line("alice") + "\n")
    with pytest.raises(UsageError, match=r"at most 0\.5"):
        usage_report(options(tmp_path, epsilon=0.6), NOW)
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(UsageError, match="no --key"):
        usage_report(options(tmp_path, audit_files=(tmp_path / "empty.jsonl",)), NOW)
    with pytest.raises(UsageError, match=r"--requests-share 1e-300 .* requests ε 5e-301"):
        usage_report(options(tmp_path, requests_share=1e-300), NOW)
    with pytest.raises(UsageError, match=r"leaves tokens ε 5e-05, below 0\.0001"):
        usage_report(options(tmp_path, epsilon=0.001, requests_share=0.95), NOW)
    assert not (tmp_path / "ledger.json").exists()


def test_a_calibration_failure_charges_nothing(tmp_path: Path, make_audit_line: Line,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenDP's measurements are built before the charge: a failure in the search leaves
    the ledger as it was."""
    (tmp_path / "audit.jsonl").write_text(make_audit_line("alice") + "\n")
    usage_report(options(tmp_path, days=(DAY - datetime.timedelta(days=1),)), NOW)
    before = (tmp_path / "ledger.json").read_bytes()

    def fail(sensitivity: int, epsilon: float) -> float:
        raise ValueError(f"induced: no scale for {sensitivity} at {epsilon}")

    monkeypatch.setattr(mechanism, "calibrate", fail)
    with pytest.raises(UsageError, match="nothing charged: induced: no scale"):
        usage_report(options(tmp_path), NOW)
    assert (tmp_path / "ledger.json").read_bytes() == before


def test_a_failure_after_the_charge_keeps_it_and_says_so(
        tmp_path: Path, make_audit_line: Line, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "audit.jsonl").write_text(make_audit_line("alice") + "\n")

    def fail(self: mechanism.Calibrated, per_cell: object) -> mechanism.NoisyVector:
        raise RuntimeError("induced sampler failure")

    monkeypatch.setattr(mechanism.Calibrated, "release", fail)
    with pytest.raises(ReleaseFailedError, match=(
            r"failed after its budget was spent: ε 0\.5 stays charged to 2026-11-29 .*"
            r"noise may have been drawn.*RuntimeError: induced sampler failure")):
        usage_report(options(tmp_path), NOW)
    assert ledger.spent(ledger.read(tmp_path / "ledger.json"), DAY) == 0.5
