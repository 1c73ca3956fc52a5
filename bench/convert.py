"""Conversion throughput in-process, and the gateway's memory while a large message goes through.

1. In this process, for a typical 50 KB scan-to-email message (a text body and one ~36 KB PDF,
   base64, as an HP or Ricoh scanner sends it): messages/s of the JSON-mode work (`convert`,
   `with_attachments`, `json.dumps`) and of the MIME-mode work (`with_envelope_bcc`, base64).
   For a --size message with one attachment: MB/s of `parse_tree` plus `iter_decoded` of the
   attachment in upload-sized pieces (what the large-message path does, delivery/submit.py).
   Best and median of several timed runs.
2. The emulator and the gateway as separate processes (`smtp-graph-gateway emulator` and
   `smtp-graph-gateway serve`, the tenant with `large_messages: true`). After one small warm-up
   message is delivered, the --size message is sent with smtplib; the gateway's VmRSS is
   sampled every 20 ms and its VmHWM read at the end. Growth = final VmHWM - VmRSS before the
   send; the target is at most 2.5 x the message size. The delivered attachment's sha256 is
   checked against the original (read from the emulator's outbox/*.json).

Prints numbers only (nothing is asserted about timing).
Run: .venv/bin/python bench/convert.py [--size 40MB] [--timeout 300] [--skip-rss]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import random
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.config.units import parse_size  # noqa: E402 - imported after sys.path points at the repository
from gateway.mime.convert import convert  # noqa: E402 - imported after sys.path points at the repository
from gateway.mime.parts import iter_decoded, parse_tree  # noqa: E402 - imported after sys.path points at the repository
from gateway.mime.recipients import with_envelope_bcc  # noqa: E402 - imported after sys.path points at the repository

CHUNK = 12 * 320 * 1024  # the large-message path's upload piece (delivery/submit.py CHUNK)
SENDER = "scanner@contoso.com"
RECIPIENTS = ["alice@contoso.com"]
SMALL = 50_000  # bytes of the typical scan (a ~36 KB PDF)
MB = 1_000_000
TARGET_RATIO = 2.5

# --- messages -------------------------------------------------------------------------------


def _base64_lines(data: bytes) -> bytes:
    """Base64 in 76-character lines with CRLF, as scanners (and every MUA) write it."""
    encoded = base64.b64encode(data)
    return b"\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76)) + b"\r\n"


def fake_pdf(size: int, seed: int) -> bytes:
    """`size` bytes that start and end like a PDF; the rest is incompressible, as a scan is."""
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /XObject /Subtype /Image >>\nstream\n"
    tail = b"\nendstream\nendobj\n%%EOF\n"
    body = random.Random(seed).randbytes(max(0, size - len(head) - len(tail)))
    return head + body + tail


def scan_message(pdf: bytes, number: int = 1) -> bytes:
    """A scan-to-email message as an HP/Ricoh multifunction device sends it."""
    boundary = f"----=_NextPart_000_{number:04d}_01DA5C3E.7F1B2A40"
    head = (
        f'From: "Scanner 3rd floor" <{SENDER}>\r\n'
        f"To: {RECIPIENTS[0]}\r\n"
        f"Subject: Scanned from HP MFP E78330 ({number})\r\n"
        "Date: Tue, 04 Jun 2024 09:41:07 +0200\r\n"
        f"Message-ID: <scan-{number:06d}.20240604094107@contoso.com>\r\n"
        "MIME-Version: 1.0\r\n"
        f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n'
        "X-Mailer: HP Digital Sending Software\r\n"
        "\r\n"
        "This is a multi-part message in MIME format.\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: 7bit\r\n"
        "\r\n"
        "Please open the attached document. It was scanned and sent to you using an HP MFP.\r\n"
        "\r\n"
        "Sent by: Scanner 3rd floor\r\n"
        "Number of Images: 3\r\n"
        "Attachment File Type: PDF\r\n"
        "\r\n"
        f"--{boundary}\r\n"
        f'Content-Type: application/pdf; name="DOC{number:06d}.pdf"\r\n'
        "Content-Transfer-Encoding: base64\r\n"
        f'Content-Disposition: attachment; filename="DOC{number:06d}.pdf"\r\n'
        "\r\n"
    ).encode()
    return head + _base64_lines(pdf) + f"\r\n--{boundary}--\r\n".encode()


def sized_scan(size: int, number: int = 1) -> tuple[bytes, bytes]:
    """(message, pdf) with the message close to `size` bytes (76/78 of the lines are base64)."""
    overhead = len(scan_message(b"", number))
    pdf = fake_pdf(max(64, (size - overhead) * 57 // 78), seed=number)
    return scan_message(pdf, number), pdf


# --- part 1: throughput in this process -----------------------------------------------------


def repeat(work: Callable[[], object], loops: int, runs: int) -> list[float]:
    """Seconds per call of `work`, one figure per run of `loops` calls (after one warm-up)."""
    work()
    seconds = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(loops):
            work()
        seconds.append((time.perf_counter() - started) / loops)
    return seconds


def json_work(raw: bytes) -> None:
    conversion = convert(raw, RECIPIENTS)
    json.dumps({"message": conversion.with_attachments(raw)})


def mime_work(raw: bytes) -> None:
    base64.b64encode(with_envelope_bcc(raw, RECIPIENTS).message)


def large_work(raw: bytes) -> int:
    tree = parse_tree(raw)
    part = next(leaf for leaf in tree.leaves() if leaf.content_type == "application/pdf")
    return sum(len(piece) for piece in iter_decoded(raw, part, CHUNK))


def throughput(size: int, runs: int) -> list[tuple[str, str, float, float]]:
    """(label, unit, best, median) rows."""
    small, _pdf = sized_scan(SMALL, 7)
    rows = []
    for label, work in (("json", json_work), ("mime", mime_work)):
        per_call = repeat(lambda work=work: work(small), loops=300, runs=runs)  # type: ignore[misc]
        rates = [1 / seconds for seconds in per_call]
        rows.append(
            (
                f"{label} mode, {len(small) / 1000:.0f} KB scan",
                "msg/s",
                max(rates),
                statistics.median(rates),
            )
        )
    large, pdf = sized_scan(size)
    assert large_work(large) == len(pdf)
    per_call = repeat(lambda: large_work(large), loops=1, runs=runs)
    rates = [len(large) / MB / seconds for seconds in per_call]
    rows.append(
        (
            f"parse+decode {len(large) / MB:.1f} MB ({len(pdf) / MB:.1f} MB PDF)",
            "MB/s",
            max(rates),
            statistics.median(rates),
        )
    )
    decoded = [len(pdf) / MB / seconds for seconds in per_call]
    rows.append(("  same, decoded bytes", "MB/s", max(decoded), statistics.median(decoded)))
    return rows


# --- part 2: the gateway's memory -----------------------------------------------------------


def proc_status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of a process, in bytes."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, rest = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            values[name] = int(rest.split()[0]) * 1024
    return values


@dataclass
class Sampler:
    """VmRSS of `pid` every `interval` seconds in a thread; `peak` is the largest seen."""

    pid: int
    interval: float = 0.02
    peak: int = 0
    samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Sampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError, KeyError):
                self.peak = max(self.peak, proc_status(self.pid)["VmRSS"])
                self.samples += 1
            self._stop.wait(self.interval)


def wait_for(what: str, check: Callable[[], Any], deadline: float, step: float = 0.02) -> Any:
    """Poll `check()` until it returns something truthy; TimeoutError naming `what`."""
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        time.sleep(step)


def started(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def alive(process: subprocess.Popen[bytes], log: Path) -> None:
    if process.poll() is not None:
        raise RuntimeError(
            f"{log.stem} exited with {process.returncode}:\n"
            f"{log.read_text(errors='replace')[-3000:]}"
        )


def emulator_info(process: subprocess.Popen[bytes], log: Path, deadline: float) -> dict[str, str]:
    """The endpoints, CA file and outbox the emulator prints once it is ready."""

    def ready() -> dict[str, str] | None:
        alive(process, log)
        text = log.read_text(errors="replace")
        if "  admin:" not in text:
            return None
        fields = {}
        for line in text.splitlines():
            key, sep, value = line.strip().partition(":")
            if sep:
                fields[key] = value.strip()
        return fields

    return wait_for("the emulator", ready, deadline)  # type: ignore[no-any-return]


def gateway_port(process: subprocess.Popen[bytes], log: Path, deadline: float) -> int:
    """The SMTP port from the gateway's JSON `listening` log line."""

    def ready() -> int | None:
        alive(process, log)
        for line in log.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                event = json.loads(line)
                if isinstance(event, dict) and event.get("event") == "listening":
                    return int(event["port"])
        return None

    return wait_for("the gateway's listener", ready, deadline)  # type: ignore[no-any-return]


def gateway_config(work: Path, emulator: dict[str, str]) -> Path:
    document = {
        "smtp": {
            "hostname": "gateway.bench",
            "listeners": [{"name": "lan", "address": "127.0.0.1", "port": 0}],
            "max_message_size": "60MiB",
        },
        "tenants": [
            {
                "name": "contoso",
                "tenant_id": "contoso-tenant",
                "client_id": "contoso-app",
                "client_secret": "contoso-secret",
                "domains": ["contoso.com"],
                "login_endpoint": emulator["login endpoint"],
                "graph_endpoint": emulator["graph endpoint"],
                "ca_file": emulator["CA file"],
                "large_messages": True,
                "max_message_size": "60MiB",
            }
        ],
        "spool": {"directory": str(work / "spool")},
        "delivery": {"retry_initial": "1s", "retry_max": "2s", "mailbox_rate": 0},
        "logging": {"level": "info", "format": "json"},
        "shutdown": {"drain_timeout": "5s"},
    }
    path = work / "gateway.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def delivered(outbox: Path, subject: str) -> dict[str, Any] | None:
    """The outbox metadata of the delivered message with this subject, once written whole."""
    for path in outbox.glob("*.json"):
        try:
            metadata = json.loads(path.read_bytes())
        except ValueError:  # being written
            continue
        if metadata.get("subject") == subject:
            return metadata  # type: ignore[no-any-return]
    return None


def send(port: int, message: bytes) -> float:
    """Send with smtplib; the perf_counter time of the 250 after DATA."""
    with smtplib.SMTP("127.0.0.1", port, timeout=120) as client:
        client.sendmail(SENDER, RECIPIENTS, message)
        return time.perf_counter()


def subject_of(message: bytes) -> str:
    return str(parse_tree(message).headers["Subject"])


@dataclass
class MemoryResult:
    size: int
    baseline_rss: int
    baseline_hwm: int
    final_hwm: int
    sampled_peak: int
    samples: int
    transfer_s: float
    delivered_s: float
    sha_ok: bool
    mode: str


def memory_run(size: int, timeout: float) -> MemoryResult:
    binary = Path(sys.executable).parent / "smtp-graph-gateway"
    command = str(binary) if binary.exists() else shutil.which("smtp-graph-gateway")
    assert command, "smtp-graph-gateway is not installed in this environment"
    deadline = time.monotonic() + timeout
    emulator = gateway = None
    with tempfile.TemporaryDirectory(prefix="sgg-convert-") as folder:
        work = Path(folder)
        try:
            emulator_log = work / "emulator.log"
            emulator = started(
                [
                    command,
                    "emulator",
                    "--listen",
                    "127.0.0.1:0",
                    "--state-dir",
                    str(work / "emulator"),
                ],
                emulator_log,
            )
            info = emulator_info(emulator, emulator_log, deadline)
            outbox = Path(info["outbox"])
            gateway_log = work / "gateway.log"
            gateway = started(
                [command, "serve", "--config", str(gateway_config(work, info))], gateway_log
            )
            port = gateway_port(gateway, gateway_log, deadline)

            warm_up, _pdf = sized_scan(SMALL, 2)
            send(port, warm_up)
            wait_for(
                "the warm-up delivery", lambda: delivered(outbox, subject_of(warm_up)), deadline
            )
            time.sleep(0.5)  # let the delivery's buffers go

            message, pdf = sized_scan(size, 3)
            subject = subject_of(message)
            before = proc_status(gateway.pid)
            with Sampler(gateway.pid) as sampler:
                sending = time.perf_counter()
                answered = send(port, message)

                def arrived() -> dict[str, Any] | None:
                    assert gateway is not None
                    alive(gateway, gateway_log)
                    return delivered(outbox, subject)

                metadata = wait_for(
                    f"delivery of the {len(message)}-byte message", arrived, deadline
                )
                done = time.perf_counter()
                time.sleep(0.5)  # anything the gateway does after Graph's last answer
            after = proc_status(gateway.pid)
        finally:
            stop(gateway)
            stop(emulator)
    shas = [a["sha256"] for a in metadata["attachments"]]
    return MemoryResult(
        size=len(message),
        baseline_rss=before["VmRSS"],
        baseline_hwm=before["VmHWM"],
        final_hwm=after["VmHWM"],
        sampled_peak=max(sampler.peak, after["VmRSS"]),
        samples=sampler.samples,
        transfer_s=answered - sending,
        delivered_s=done - answered,
        sha_ok=hashlib.sha256(pdf).hexdigest() in shas,
        mode=str(metadata.get("mode")),
    )


# --- output ---------------------------------------------------------------------------------


def table(rows: list[tuple[str, ...]]) -> Iterator[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for number, row in enumerate(rows):
        yield "  ".join(
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        if number == 0:
            yield "  ".join("-" * width for width in widths)


def mb(value: int) -> str:
    return f"{value / MB:.1f} MB"


def main(size: int, runs: int, timeout: float, skip_rss: bool) -> int:
    rows = throughput(size, runs)
    for label, unit, best, median in rows:
        print(
            f"throughput: {label}: best {best:,.1f} {unit}, median {median:,.1f} {unit}", flush=True
        )
    result = None if skip_rss else memory_run(size, timeout)
    print()
    lines: list[tuple[str, ...]] = [("measure", "best", "median", "unit")]
    lines += [(label, f"{best:,.1f}", f"{median:,.1f}", unit) for label, unit, best, median in rows]
    print("\n".join(table(lines)))
    if result is None:
        return 0
    growth = result.final_hwm - result.baseline_rss
    sampled = result.sampled_peak - result.baseline_rss
    ratio = growth / result.size
    print()
    memory: list[tuple[str, ...]] = [
        ("large path (gateway process)", "value"),
        ("message size", mb(result.size)),
        ("baseline VmRSS (after warm-up)", mb(result.baseline_rss)),
        ("baseline VmHWM (after warm-up)", mb(result.baseline_hwm)),
        ("peak VmHWM", mb(result.final_hwm)),
        ("peak VmRSS sampled every 20 ms", mb(result.sampled_peak)),
        ("growth (VmHWM - baseline VmRSS)", mb(growth)),
        ("growth / message size", f"{ratio:.2f} (target <= {TARGET_RATIO})"),
        ("sampled growth / message size", f"{sampled / result.size:.2f}"),
        ("DATA sent (smtplib, to the 250)", f"{result.transfer_s:.2f} s"),
        ("250 -> delivered", f"{result.delivered_s:.2f} s"),
        ("attachment sha256", "ok" if result.sha_ok else "MISMATCH"),
        ("delivered as (emulator outbox mode)", result.mode),
    ]
    print("\n".join(table(memory)))
    return 0 if result.sha_ok else 1


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--size",
        type=parse_size,
        default="40MB",
        help="size of the large message (40MB, 35MiB or bytes; default 40MB)",
    )
    parser.add_argument("--runs", type=int, default=7, help="timed runs per measure (default 7)")
    parser.add_argument(
        "--timeout", type=float, default=300, help="seconds for the whole gateway run (default 300)"
    )
    parser.add_argument("--skip-rss", action="store_true", help="only the in-process throughput")
    arguments = parser.parse_args()
    raise SystemExit(main(arguments.size, arguments.runs, arguments.timeout, arguments.skip_rss))
