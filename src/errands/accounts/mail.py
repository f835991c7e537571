"""Email over SMTP (invitations, verification codes, password resets)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage

from errands.errors import ErrandsError
from errands.settings import Settings

TIMEOUT = 20


class MailError(ErrandsError):
    code = "mail_error"
    status = 502


def configured(settings: Settings) -> bool:
    return bool(settings.smtp_host)


def public_url(settings: Settings) -> str:
    return (settings.public_url or f"http://{settings.host}:{settings.port}").rstrip("/")


def send(
    settings: Settings,
    to: str,
    subject: str,
    body: str,
    *,
    headers: dict[str, str] | None = None,
) -> bool:
    """Send one plain-text message; False when no SMTP server is configured."""
    if not settings.smtp_host:
        return False
    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = subject
    for name, value in (headers or {}).items():
        message[name] = value
    message.set_content(body)
    try:
        smtp: smtplib.SMTP
        if settings.smtp_tls == "ssl":
            smtp = smtplib.SMTP_SSL(
                settings.smtp_host,
                settings.smtp_port,
                timeout=TIMEOUT,
                context=ssl.create_default_context(),
            )
        else:
            smtp = smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=TIMEOUT)
        with smtp:
            if settings.smtp_tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                password = (
                    settings.smtp_password.get_secret_value() if settings.smtp_password else ""
                )
                smtp.login(settings.smtp_username, password)
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as exc:
        raise MailError(
            f"Could not send email through {settings.smtp_host}:{settings.smtp_port} "
            f"({type(exc).__name__}: {exc}); check the ERRANDS_SMTP_* settings."
        ) from exc
    return True
