"""Threshold Verify, the desktop app, run headless by tests: its real command, its own home.

Each ``VerifyApp`` is one installation (a home directory, a file keyring, optionally a
TPM behind swtpm). ``start`` runs a command with pipes: ``expect`` waits for a line of its
output, ``answer`` types a line. Its clock follows the server's (the same offset file,
through ``CLOCK_DIR``'s sitecustomize), as the only thing tests fake.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from tests.support.processes import free_port

CLOCK_DIR = Path(__file__).resolve().parent / "verify_clock"


def verify_command() -> list[str]:
    script = Path(sys.prefix) / "bin" / "threshold-verify"
    return [str(script)] if script.exists() else [sys.executable, "-m", "threshold_verify.cli"]


@dataclass
class Running:
    process: subprocess.Popen[str]
    lines: queue.Queue[str | None] = field(default_factory=queue.Queue)
    output: list[str] = field(default_factory=list)
    ended: bool = False  # the reader's end (None) has been taken from ``lines``

    def __post_init__(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.process.stdout.close()
        self.lines.put(None)

    def expect(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        """The first line (from here on) that matches ``pattern``; fails after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(0.01, remaining))
            except queue.Empty:
                raise AssertionError(
                    f"no line matching {pattern!r} in {timeout} s:\n" + "\n".join(self.output)
                ) from None
            if line is None:
                self.ended = True
                raise AssertionError(
                    f"the app ended before {pattern!r}:\n" + "\n".join(self.output)
                )
            self.output.append(line)
            found = re.search(pattern, line)
            if found:
                return found

    def stop(self) -> None:
        """End the app if it still runs (a test that failed half-way)."""
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.finish(timeout=10)
        except (subprocess.TimeoutExpired, OSError):
            self.process.kill()

    def answer(self, text: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(text + "\n")
        self.process.stdin.flush()

    def finish(self, timeout: float = 30) -> int:
        """Wait for the app to end; its exit status (the rest of its output is kept)."""
        status = self.process.wait(timeout=timeout)
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        while not self.ended:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                break
            if line is None:
                self.ended = True
                break
            self.output.append(line)
        return status

    @property
    def text(self) -> str:
        return "\n".join(self.output)


@dataclass
class VerifyApp:
    home: Path
    clock_file: str
    tcti: str | None = None  # a TPM (swtpm) for this installation, or none
    started: list[Running] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("THRESHOLD_", "TPM2TOOLS_")) and key != "PYTHONPATH"
        }
        env.update(
            THRESHOLD_VERIFY_HOME=str(self.home / "state"),
            # A file keyring, as on a machine without a keyring service (CI).
            PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring",
            XDG_DATA_HOME=str(self.home / "data"),
            THRESHOLD_TEST_CLOCK_FILE=self.clock_file,
            PYTHONPATH=str(CLOCK_DIR),
            PYTHONUNBUFFERED="1",
        )
        if self.tcti:
            env["THRESHOLD_VERIFY_TCTI"] = self.tcti
        return env

    def start(self, *args: str) -> Running:
        store = "tpm" if self.tcti else "software"
        process = subprocess.Popen(
            [*verify_command(), "--key-store", store, *args],
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        running = Running(process)
        self.started.append(running)
        return running

    def close(self) -> None:
        for running in self.started:
            running.stop()

    def run(self, *args: str, answers: tuple[str, ...] = (), timeout: float = 60) -> Running:
        """Run a command to its end with ``answers`` typed in order."""
        running = self.start(*args)
        for answer in answers:
            running.answer(answer)
        running.finish(timeout)
        return running


def _free_port_pair() -> int:
    for _ in range(50):
        port = free_port()
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port + 1)) != 0:
                return port
    raise AssertionError("no two free ports in a row")


def tpm_manufacturer_ca(directory: Path) -> Path:
    """A CA that plays the TPM manufacturer: swtpm_localca signs the EK certificates of
    ``swtpm``'s TPMs with it, and the server trusts it (THRESHOLD_DEVICE_TPM_ROOTS).
    Returns the CA certificate's path."""
    directory.mkdir(parents=True, exist_ok=True)
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Threshold test TPM manufacturer")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "signkey.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    path = directory / "issuercert.pem"
    path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "certserial").write_text("1\n")
    (directory / "localca.conf").write_text(
        f"statedir = {directory}\n"
        f"signingkey = {directory / 'signkey.pem'}\n"
        f"issuercert = {path}\n"
        f"certserial = {directory / 'certserial'}\n"
    )
    (directory / "swtpm_setup.conf").write_text(
        "create_certs_tool = /usr/bin/swtpm_localca\n"
        f"create_certs_tool_config = {directory / 'localca.conf'}\n"
        "create_certs_tool_options = /etc/swtpm-localca.options\n"
        "active_pcr_banks = sha256\n"
    )
    return path


def _manufacture(state_dir: Path, ca_dir: Path) -> None:
    """swtpm_setup: the TPM's state, with an RSA endorsement key and its certificate in NV."""
    done = subprocess.run(
        [
            "swtpm_setup",
            "--tpm2",
            "--tpmstate",
            str(state_dir),
            "--create-ek-cert",
            "--config",
            str(ca_dir / "swtpm_setup.conf"),
            "--overwrite",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


@contextmanager
def swtpm(state_dir: Path, ca_dir: Path | None = None) -> Iterator[str]:
    """A software TPM 2.0 on loopback; yields its TCTI. Needs Debian's swtpm. With ``ca_dir``
    (``tpm_manufacturer_ca``), its EK has a certificate from that CA."""
    binary = shutil.which("swtpm")
    assert binary, "swtpm is not installed (scripts/system-deps tpm)"
    state_dir.mkdir(parents=True, exist_ok=True)
    if ca_dir is not None:
        _manufacture(state_dir, ca_dir)
    # The swtpm TCTI finds the control channel on the next port. Another process may take
    # the free pair before swtpm binds it (swtpm then exits): another pair, up to 5 times.
    for _attempt in range(5):
        port = _free_port_pair()
        process = _start_swtpm(binary, state_dir, port)
        if _listening(process, port):
            break
        process.terminate()
        process.wait(timeout=10)
    else:
        raise AssertionError("swtpm did not start listening on 127.0.0.1")
    try:
        yield f"swtpm:host=127.0.0.1,port={port}"
    finally:
        process.terminate()
        process.wait(timeout=10)


def _start_swtpm(binary: str, state_dir: Path, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            binary,
            "socket",
            "--tpm2",
            "--tpmstate",
            f"dir={state_dir}",
            "--server",
            f"type=tcp,port={port},bindaddr=127.0.0.1",
            "--ctrl",
            f"type=tcp,port={port + 1},bindaddr=127.0.0.1",
            "--flags",
            "not-need-init,startup-clear",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _listening(process: subprocess.Popen[bytes], port: int) -> bool:
    """Whether this swtpm (still running) accepts on its data and control ports within 10 s."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False  # it exited: the ports were taken
        with socket.socket() as data, socket.socket() as ctrl:
            if (
                data.connect_ex(("127.0.0.1", port)) == 0
                and ctrl.connect_ex(("127.0.0.1", port + 1)) == 0
            ):
                return process.poll() is None
        time.sleep(0.05)
    return False
