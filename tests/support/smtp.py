"""A mail server on loopback that speaks just enough SMTP (RFC 5321) for Django's SMTP backend:
it counts the connections and keeps each message's recipients, and can hang up after a number
of messages, as a server that drops an idle or busy client does."""

from __future__ import annotations

import socket
import socketserver
import threading
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Mailbox:
    connections: int = 0
    # Each message's recipients, in the order they arrived.
    messages: list[list[str]] = field(default_factory=list)
    # Hang up (without answering) the DATA of the message after this many, once.
    hang_up_after: int | None = None
    # Recipients refused at RCPT (550), as a relay that knows its mailboxes refuses a typo.
    unknown: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(socketserver.StreamRequestHandler):
    server: _Server

    def reply(self, line: str) -> None:
        self.wfile.write(line.encode() + b"\r\n")
        self.wfile.flush()

    def handle(self) -> None:
        box = self.server.mailbox
        with box.lock:
            box.connections += 1
        self.reply("220 localhost test SMTP")
        recipients: list[str] = []
        while line := self.rfile.readline():
            command = line.decode(errors="replace").strip()
            verb = command.split(" ", 1)[0].upper()
            if verb in {"EHLO", "HELO"}:
                self.reply("250 localhost")
            elif verb == "MAIL":
                recipients = []
                self.reply("250 OK")
            elif verb == "RCPT":
                recipient = command.split(":", 1)[1].strip(" <>")
                if recipient in box.unknown:
                    self.reply("550 5.1.1 No such user")
                    continue
                recipients.append(recipient)
                self.reply("250 OK")
            elif verb == "DATA":
                with box.lock:
                    limit = box.hang_up_after
                    hang_up = limit is not None and len(box.messages) >= limit
                    if hang_up:
                        box.hang_up_after = None
                if hang_up:
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                self.reply("354 End data with <CR><LF>.<CR><LF>")
                while self.rfile.readline() not in {b".\r\n", b""}:
                    pass
                with box.lock:
                    box.messages.append(recipients)
                self.reply("250 OK queued")
            elif verb == "QUIT":
                self.reply("221 Bye")
                return
            else:  # RSET, NOOP
                self.reply("250 OK")


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    mailbox: Mailbox


class SMTPServer:
    def __init__(self) -> None:
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.mailbox = self.mailbox = Mailbox()
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def settings(self) -> dict[str, Any]:
        """Django settings that send mail here."""
        return {
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "EMAIL_PORT": self.port,
            "EMAIL_USE_TLS": False,
            "EMAIL_HOST_USER": "",
            "EMAIL_HOST_PASSWORD": "",
            "EMAIL_TIMEOUT": 10,
        }

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
