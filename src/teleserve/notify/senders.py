"""Senders: where a rendered message goes, behind one interface.

- ``DevRecorderSender`` (demo mode and tests): delivers nothing; the message row keeps
  the full text (``transcript``) so the console's "phone screen" and the tests can read it.
- ``SmtpSender``: email through an SMTP server (``smtp_*`` settings).
- ``Unavailable``: a channel this deployment has no way to deliver on. It fails the
  message for good, with its reason, instead of pretending — in production there is no
  SMS gateway yet, so every SMS ends ``failed`` with "No SMS gateway is configured".

A sender raises ``PermanentFailure`` when retrying cannot help (refused recipient, channel
unavailable) and any other exception for a transient problem (server down, timeout): the
outbox worker retries those with backoff.
"""

from __future__ import annotations

import smtplib
import ssl
import threading
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Protocol

from teleserve.core.clock import utcnow
from teleserve.core.i18n import _
from teleserve.core.settings import Mode, Settings, get_settings
from teleserve.core.worker import PermanentFailure
from teleserve.notify.models import Channel

# SMTP replies that mean "fix the configuration", which an operator may do within the
# retry window: authentication required (530) or failed (535).
_SMTP_RETRYABLE_5XX = frozenset({530, 535})


@dataclass(frozen=True)
class Outgoing:
    """A rendered message, in full, as handed to a sender."""

    id: str
    channel: Channel
    to: str
    subject: str
    body: str
    locale: str


@dataclass(frozen=True)
class Delivery:
    provider: str
    reference: str
    transcript: str | None = None  # kept in the row (the development recorder only)


class Sender(Protocol):
    name: str

    def send(self, message: Outgoing) -> Delivery: ...


class DevRecorderSender:
    """Demo mode and tests: "delivers" by recording the full text in the message row."""

    name = "dev-recorder"

    def send(self, message: Outgoing) -> Delivery:
        text = message.body
        if message.channel is Channel.email:
            text = f"{message.subject}\n\n{message.body}"
        return Delivery(self.name, f"dev-{message.id}", text)


class Unavailable:
    """A channel with no configured way out: fails at once, and says why."""

    name = "unavailable"

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def send(self, message: Outgoing) -> Delivery:
        raise PermanentFailure(self.reason)


@dataclass(frozen=True)
class SmtpConfig:
    host: str
    port: int = 587
    user: str | None = None
    password: str | None = None
    sender: str = "teleserve@localhost"
    security: str = "starttls"  # starttls | ssl | none
    timeout: float = 10.0

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpConfig | None:
        """The configured server, or None. The ``smtp_*`` fields are read leniently so a
        settings class without them means "no SMTP server" (see docs/outbox.md)."""
        host = getattr(settings, "smtp_host", None)
        if not host:
            return None
        return cls(
            host=str(host),
            port=int(getattr(settings, "smtp_port", 587)),
            user=getattr(settings, "smtp_user", None) or None,
            password=getattr(settings, "smtp_password", None) or None,
            sender=str(getattr(settings, "smtp_from", None) or "teleserve@localhost"),
            security=str(getattr(settings, "smtp_security", "starttls")),
            timeout=float(getattr(settings, "smtp_timeout_seconds", 10.0)),
        )


class SmtpSender:
    """Email through SMTP (STARTTLS, implicit TLS or plain), one connection per message."""

    name = "smtp"

    def __init__(self, config: SmtpConfig) -> None:
        if config.security not in ("starttls", "ssl", "none"):
            raise ValueError(f"smtp security must be starttls, ssl or none: {config.security}")
        self.config = config

    def _message(self, message: Outgoing) -> EmailMessage:
        email = EmailMessage()
        email["From"] = self.config.sender
        email["To"] = message.to
        email["Subject"] = message.subject
        email["Date"] = format_datetime(utcnow())
        # A stable Message-ID: a redelivery (at least once) can be recognised downstream.
        domain = self.config.sender.rpartition("@")[2] or "teleserve"
        email["Message-ID"] = f"<{message.id}@{domain}>"
        email.set_content(message.body)  # UTF-8, so Chinese text travels as is
        return email

    def send(self, message: Outgoing) -> Delivery:
        cfg = self.config
        email = self._message(message)
        smtp: smtplib.SMTP
        try:
            if cfg.security == "ssl":
                smtp = smtplib.SMTP_SSL(
                    cfg.host, cfg.port, timeout=cfg.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(cfg.host, cfg.port, timeout=cfg.timeout)
            with smtp:
                if cfg.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if cfg.user:
                    smtp.login(cfg.user, cfg.password or "")
                smtp.send_message(email)
        except smtplib.SMTPRecipientsRefused as exc:
            raise PermanentFailure(f"the mail server refused the recipient: {exc}") from exc
        except smtplib.SMTPResponseException as exc:
            if 500 <= exc.smtp_code < 600 and exc.smtp_code not in _SMTP_RETRYABLE_5XX:
                raise PermanentFailure(f"the mail server refused the message: {exc}") from exc
            raise  # 4xx and authentication: worth another attempt
        return Delivery(self.name, str(email["Message-ID"]))


_overrides: dict[Channel, Sender] = {}
_overrides_lock = threading.Lock()


def use_sender(channel: Channel, sender: Sender | None) -> None:
    """Install ``sender`` for ``channel`` in this process (``None``: back to settings).
    For tests, and for a gateway plugin until one is configurable by settings."""
    with _overrides_lock:
        if sender is None:
            _overrides.pop(channel, None)
        else:
            _overrides[channel] = sender


def sender_for(channel: Channel, settings: Settings | None = None) -> Sender:
    """The sender a message on ``channel`` goes to under ``settings``.

    Demo mode records SMS (and email too, unless an SMTP server is configured).
    Production sends email by SMTP when configured; SMS has no gateway yet, so it fails.
    """
    with _overrides_lock:
        override = _overrides.get(channel)
    if override is not None:
        return override
    settings = settings or get_settings()
    if channel is Channel.email:
        smtp = SmtpConfig.from_settings(settings)
        if smtp is not None:
            return SmtpSender(smtp)
        if settings.mode is Mode.demo:
            return DevRecorderSender()
        return Unavailable(_("No email (SMTP) server is configured"))
    if settings.mode is Mode.demo:
        return DevRecorderSender()
    return Unavailable(_("No SMS gateway is configured"))


def channel_available(channel: Channel, settings: Settings | None = None) -> bool:
    """Whether ``channel`` can deliver at all here (callers may refuse early, e.g. an OTP
    login offered only where SMS can reach the customer)."""
    return not isinstance(sender_for(channel, settings), Unavailable)
