"""The job runner as a real subprocess against moto S3: success, failure, signals, bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import boto3
import pytest

from snakemake_executor_plugin_awsbatch.jobside import runner
from snakemake_executor_plugin_awsbatch.jobside.manifest import pack
from snakemake_executor_plugin_awsbatch.transfer import download_files, sha256_bytes
from tests.jobside.harness import Job

ODD = "in put#1 ü+%20.txt"


def write(path: Path, data: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data)
    return path


def assert_scratch_clean(job: Job) -> None:
    assert list(job.scratch_root.iterdir()) == [], "scratch root not left as it was found"


def wait_for(path: Path, proc: subprocess.Popen[str], timeout: float = 60) -> None:
    """Wait until the command has written `path` (not a timing assertion: a deadlock guard)."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_success_fetches_runs_uploads_reports_and_cleans_up(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_BATCH_JOB_ID", "1234abcd:7")
    monkeypatch.setenv("AWS_BATCH_JOB_ATTEMPT", "2")
    src = tmp_path / "src"
    (src / "refs" / "empty").mkdir(parents=True)
    write(src / "refs" / "genome.fa", ">chr1\nACGT\n")
    marks = tmp_path / "marks"
    marks.mkdir()
    command = f"""set -euo pipefail
        test "$JOB_MARKER" = from-manifest
        test -d refs/empty
        pwd > {marks}/pwd; echo "$TMPDIR" > {marks}/tmpdir
        mkdir -p results/dir/empty logs
        cat Snakefile "data/{ODD}" refs/genome.fa > "results/out {ODD}"
        echo x > results/dir/x.txt
        echo "all good" > logs/job.log
    """
    job = Job(
        bucket,
        tmp_path,
        command,
        inputs={
            "Snakefile": write(src / "Snakefile", "rule all:\n"),
            f"data/{ODD}": write(src / ODD, "odd"),
        },
        input_dirs={"refs": src / "refs"},
        outputs=[
            (f"results/out {ODD}", "output", False),
            ("results/dir", "output", True),
            ("logs/job.log", "log", False),
        ],
    )

    result = job.run()

    assert result.returncode == 0, result.stderr
    expected = "rule all:\nodd>chr1\nACGT\n"
    assert job.object(f"results/out {ODD}") == expected.encode()
    report = job.report()
    assert (report.status, report.exit_code, report.error, report.missing) == (
        "succeeded",
        0,
        None,
        [],
    )
    assert {w.path: w.sha256 for w in report.written}[f"results/out {ODD}"] == sha256_bytes(
        expected.encode()
    )
    assert report.inputs["files"] == 3
    assert {"manifest", "setup", "download", "command", "upload", "cleanup"} <= set(report.phases)
    scratch = Path(report.scratch_dir)
    assert scratch.parent == job.scratch_root and scratch.name.startswith("1234abcd-7-a2-")
    assert (marks / "pwd").read_text().strip() == str(scratch / "work")
    assert (marks / "tmpdir").read_text().strip() == str(scratch / "tmp")
    assert_scratch_clean(job)
    # The submitting side brings everything back, verified against the report.
    back = tmp_path / "back"
    download_files(report.download_items(back))
    assert (back / f"results/out {ODD}").read_text() == expected
    assert (back / "results/dir/empty").is_dir() and (
        back / "results/dir/x.txt"
    ).read_text() == "x\n"
    assert (back / "logs/job.log").read_text() == "all good\n"


def test_failing_command_uploads_logs_not_outputs(tmp_path: Path, bucket: str) -> None:
    command = (
        "mkdir -p logs results; echo boom > logs/job.log; echo partial > results/out.txt; exit 7"
    )
    job = Job(
        bucket,
        tmp_path,
        command,
        outputs=[("results/out.txt", "output", False), ("logs/job.log", "log", False)],
    )

    result = job.run()

    assert result.returncode == 7
    assert "the command exited with 7" in result.stderr
    assert job.object("logs/job.log") == b"boom\n"
    assert not job.exists("results/out.txt")
    report = job.report()
    assert (report.status, report.command_exit_code) == ("failed", 7)
    assert [w.path for w in report.written] == ["logs/job.log"]
    assert_scratch_clean(job)


def test_missing_output_fails_the_job_and_names_it(tmp_path: Path, bucket: str) -> None:
    command = "mkdir -p results; echo a > results/a.txt"
    job = Job(
        bucket,
        tmp_path,
        command,
        outputs=[("results/a.txt", "output", False), ("results/b c.txt", "output", False)],
    )

    result = job.run()

    assert result.returncode == 4
    assert "did not create: results/b c.txt" in result.stderr
    assert not job.exists("results/a.txt"), "no partial set of outputs may be uploaded"
    report = job.report()
    assert (report.status, report.missing) == ("failed", ["results/b c.txt"])
    assert_scratch_clean(job)


def test_checksum_mismatch_on_input_fails_before_the_command_runs(
    tmp_path: Path, bucket: str
) -> None:
    marker = tmp_path / "ran"
    job = Job(
        bucket, tmp_path, f"touch {marker}", inputs={"data/in.txt": write(tmp_path / "in.txt", "x")}
    )
    manifest = job.manifest()
    manifest.inputs[0] = manifest.inputs[0].__class__(
        **{**manifest.inputs[0].__dict__, "sha256": "f" * 64}
    )

    result = job.run(manifest)

    assert result.returncode == 3
    assert "checksum mismatch" in result.stderr and "data/in.txt" in result.stderr
    assert not marker.exists()
    assert job.report().status == "failed"
    assert_scratch_clean(job)


TRAPPING = """trap 'echo "$0 got {sig}" > {marks}/{sig}; exit 99' {sig}
echo started > {marks}/started
sleep 600 & wait
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_is_forwarded_then_scratch_removed(
    tmp_path: Path, bucket: str, sig: signal.Signals
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    job = Job(
        bucket,
        tmp_path,
        TRAPPING.format(sig=sig.name[3:], marks=marks),
        outputs=[("out", "output", False)],
    )
    proc = job.start(job.put_manifest())
    wait_for(marks / "started", proc)

    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 128 + sig
    assert (marks / sig.name[3:]).exists(), "the command did not receive the signal"
    report = job.report()
    assert (report.status, report.command_exit_code) == ("terminated", 99)
    assert sig.name in err
    assert_scratch_clean(job)


def test_command_ignoring_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, bucket: str
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    command = f"trap '' TERM; echo started > {marks}/started; while true; do sleep 0.2; done"
    job = Job(bucket, tmp_path, command)
    proc = job.start(job.put_manifest(), env={**os.environ, "AWSBATCH_KILL_GRACE_SECONDS": "1"})
    wait_for(marks / "started", proc)

    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=60)

    assert proc.returncode == 143
    assert job.report().command_exit_code == 128 + signal.SIGKILL
    assert_scratch_clean(job)


def test_two_runners_at_once_get_different_scratch_directories(tmp_path: Path, bucket: str) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [Job(bucket, tmp_path, f"pwd > {marks}/{n}; sleep 1", name=f"job{n}") for n in (1, 2)]
    procs = [j.start(j.put_manifest()) for j in jobs]
    assert [p.wait(timeout=60) for p in procs] == [0, 0]
    assert (marks / "1").read_text() != (marks / "2").read_text()
    assert_scratch_clean(jobs[0])


def test_an_array_child_runs_its_own_record_of_the_pack(
    tmp_path: Path, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = [
        Job(bucket, tmp_path, f"echo {n} > {marks}/ran-" + "x" * n, name=f"arr/{n}")
        for n in (0, 1, 2)
    ]
    body, width = pack([j.manifest() for j in jobs])
    key = "runs/run-1/arr/manifests.pack"
    boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=body)
    monkeypatch.setenv("AWS_BATCH_JOB_ARRAY_INDEX", "1")
    proc = jobs[1].start(f"s3://{bucket}/{key}", extra=["--record-bytes", str(width)])
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert [p.name for p in marks.iterdir()] == ["ran-x"]
    assert jobs[1].report().status == "succeeded"
    assert "job arr/1 of run run-1" in err
    assert_scratch_clean(jobs[1])


def test_unknown_manifest_version_is_one_clear_error(tmp_path: Path, bucket: str) -> None:
    job = Job(bucket, tmp_path, "true")
    manifest = job.manifest()
    manifest.version = 99
    result = job.run(manifest)
    assert result.returncode == 2
    assert "manifest version 99 is not supported" in result.stderr
    assert "Traceback" not in result.stderr


def test_sigterm_during_download_stops_it_and_cleans_up(tmp_path: Path, bucket: str) -> None:
    marker = tmp_path / "ran"
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(80 * 1024 * 1024))
    inputs = {"big.bin": big}
    for i in range(200):
        inputs[f"small/{i}.txt"] = write(tmp_path / "small" / f"{i}.txt", str(i))
    job = Job(bucket, tmp_path, f"touch {marker}", inputs=inputs)
    proc = job.start(job.put_manifest())
    assert proc.stderr is not None
    for line in proc.stderr:  # the download starts right after this line
        if "scratch directory" in line:
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)

    assert proc.returncode == 143, err
    assert not marker.exists()
    report = job.report()
    assert (report.status, report.command_exit_code) == ("terminated", None)
    assert_scratch_clean(job)


def test_a_uid_without_a_passwd_entry_gets_a_user_name(monkeypatch):
    def no_entry(uid):
        raise KeyError(f"getpwuid(): uid not found: {uid}")

    monkeypatch.setattr(runner.pwd, "getpwuid", no_entry)
    assert runner.user_name({}) == {"USER": str(os.getuid())}
    assert runner.user_name({"LOGNAME": "alice"}) == {}


def test_a_uid_with_a_passwd_entry_keeps_its_own_name():
    assert runner.user_name({}) == {}
